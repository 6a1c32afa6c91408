"""The server's web page in a real browser: Debian's Chromium through chromium-driver and
Selenium, headless. The page takes the key, transcribes a chosen file, and transcribes the
"microphone": Chromium's fake capture device playing a held-out clip once."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mlx_qwen_asr.audio import SAMPLE_RATE, load_audio
from mlx_qwen_asr.writers import to_string

from heldout import HELDOUT, rows
from server_support import ServerProcess

KEY = "page-key-456"
# The tiny fixture model makes up a word after some clips once 2 s of silence follow them,
# offline as well; this clip's transcript stays the same with 1 to 5 s of silence after it,
# so the time the microphone keeps running after the clip does not change the text.
LIVE_CLIP = "short_06.flac"
FILE_CLIP = [r["file"] for r in rows() if r["kind"] == "medium"][0]


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_checkpoint):
    proc = ServerProcess(["--model", str(trained_checkpoint), "--dtype", "float32", "--model-name", "tiny"],
                         tmp_path_factory.mktemp("page-server"), api_key=KEY)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def fake_microphone(tmp_path_factory) -> tuple[str, float]:
    """The live clip as the 16-bit WAV Chromium's fake device plays, with 2 s of silence after it."""
    audio = np.concatenate([load_audio(HELDOUT / LIVE_CLIP), np.zeros(2 * SAMPLE_RATE, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "clip.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return str(path), len(audio) / SAMPLE_RATE


@pytest.fixture(scope="module")
def browser(tmp_path_factory, fake_microphone):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "needs Debian's chromium and chromium-driver (README: Tests)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1100",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_microphone[0]}%noloop",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def test_page_key_file_and_live_microphone(server, browser, fake_microphone, trained_offline, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(server.url + "/")
    assert "API key needed" in browser.page_source
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "enter").click()
    wait.until(lambda d: d.find_element(By.ID, "model").text == "tiny")

    # A file: its transcript, segment times and downloads are the CLI's.
    chooser = browser.find_element(By.ID, "file-input")
    browser.execute_script("arguments[0].hidden = false", chooser)
    chooser.send_keys(str(HELDOUT / FILE_CLIP))
    wait.until(lambda d: d.find_element(By.ID, "file-result").is_displayed())
    offline = trained_offline[FILE_CLIP]
    assert browser.find_element(By.ID, "result-text").text == offline.text
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#segments td")]
    assert cells[2::3] == [s.text for s in offline.segments if s.text]
    for fmt in ("txt", "srt", "vtt"):
        assert browser.execute_script(f"return writers.{fmt}(lastResult)") == to_string(offline, fmt), fmt

    # The microphone: live text over the WebSocket, then the committed item.
    browser.find_element(By.ID, "mic").click()
    wait.until(lambda d: d.find_element(By.ID, "live-status").text == "listening…")
    seen_live = ""
    deadline = time.monotonic() + fake_microphone[1] + 1.0
    while time.monotonic() < deadline:
        seen_live = seen_live or browser.find_element(By.ID, "live-committed").text \
            or browser.find_element(By.ID, "live-partial").text
        time.sleep(0.2)
    assert seen_live, "no live text while the clip played"
    browser.find_element(By.ID, "mic").click()
    wait.until(lambda d: d.find_element(By.ID, "live-status").text == "done")
    live_text = browser.find_element(By.ID, "live-committed").text
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert live_text.endswith(trained_offline[LIVE_CLIP].text), (live_text, trained_offline[LIVE_CLIP].text)
