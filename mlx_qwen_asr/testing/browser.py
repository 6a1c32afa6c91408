"""Headless Debian Chromium through chromedriver and Selenium (the `test` extra), for
looking at the project's HTML in a real browser: the notebook view's tests and screenshots."""

from __future__ import annotations

import shutil
import tempfile

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "--hide-scrollbars")


def headless_chromium(width: int = 1000, height: int = 900, profile_dir: str | None = None):
    """A Selenium driver for headless Chromium (quit it when done); AssertionError naming
    the packages when chromium or chromedriver is missing."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--window-size={width},{height}",
                 f"--user-data-dir={profile_dir or tempfile.mkdtemp(prefix='chromium-profile-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver_path))
