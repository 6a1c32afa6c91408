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
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from selenium.webdriver.support.ui import WebDriverWait

from mlx_qwen_asr.audio.load import SAMPLE_RATE, load_audio
from mlx_qwen_asr.model.config import SUPPORTED_LANGUAGES
from mlx_qwen_asr.writers import to_string

from support.heldout import HELDOUT, rows
from support.server_support import ServerProcess

KEY = "page-key-456"
# The tiny fixture model makes up a word after some clips once 2 s of silence follow them,
# offline as well; this clip's transcript stays the same with 1 to 5 s of silence after it,
# so the time the microphone keeps running after the clip does not change the text.
LIVE_CLIP = "short_06.flac"
FILE_CLIP = [r["file"] for r in rows() if r["kind"] == "medium"][0]
LONG_CLIP = [r["file"] for r in rows() if r["kind"] == "long"][0]


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_checkpoint, trained_aligner):
    proc = ServerProcess(["--model", str(trained_checkpoint), "--dtype", "float32", "--model-name", "tiny",
                          "--aligner", str(trained_aligner)],
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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})   # the console, checked at the end
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def test_page_key_file_and_live_microphone(server, browser, fake_microphone, trained_model, trained_aligner,
                                          trained_offline, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(server.url + "/")
    assert "API key needed" in browser.page_source
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "enter").click()
    wait.until(lambda d: d.find_element(By.ID, "model").text == "tiny")
    browser.get_log("browser")   # read (and so dropped): the key page's 401, which is on purpose

    # The file chooser from the keyboard: Tab reaches the drop zone, Enter opens the chooser
    # (its click is caught here: a headless browser has no dialog to show).
    chooser = browser.find_element(By.ID, "file-input")
    browser.execute_script("window.chooserOpened = false; arguments[0].addEventListener('click', (e) => "
                           "{ window.chooserOpened = true; e.preventDefault(); })", chooser)
    for _ in range(4):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == "drop":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "drop"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.execute_script("return window.chooserOpened")

    # The language choice: every language the model names, and "detect".
    language = Select(browser.find_element(By.ID, "language"))
    assert [o.get_attribute("value") for o in language.options] == [""] + sorted(SUPPORTED_LANGUAGES)
    language.select_by_value("English")

    # A file, with upload progress: its transcript, segment times and downloads are the
    # CLI's (srt and vtt word-timed, as the CLI writes them by default).
    browser.execute_script("window.seen = []; new MutationObserver(() => seen.push([$('file-status').textContent, "
                           "$('progress').value])).observe($('file-status'), {childList: true, subtree: true})")
    browser.execute_script("arguments[0].hidden = false", chooser)
    chooser.send_keys(str(HELDOUT / FILE_CLIP))
    wait.until(lambda d: d.find_element(By.ID, "file-result").is_displayed())
    seen = browser.execute_script("return window.seen")
    assert any(text.startswith("Transcribing " + FILE_CLIP) and value == 1 for text, value in seen), seen
    offline = trained_model.transcribe(HELDOUT / FILE_CLIP, language="English")
    timed = trained_model.transcribe(HELDOUT / FILE_CLIP, language="English", word_timestamps=True,
                                     aligner=str(trained_aligner))
    assert browser.execute_script("return lastResult.language") == "english"
    assert browser.find_element(By.ID, "result-text").text == offline.text
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#segments td")]
    assert cells[2::3] == [s.text for s in offline.segments if s.text]
    for fmt, expected in (("txt", to_string(offline, "txt")), ("srt", to_string(timed, "srt")),
                          ("vtt", to_string(timed, "vtt"))):
        text = browser.execute_async_script("download(arguments[0]).then(arguments[1])", fmt)
        assert text == expected, fmt

    # A long upload can be cancelled: the page says so and shows no result.
    language.select_by_value("")
    chooser.send_keys(str(HELDOUT / LONG_CLIP))
    wait.until(lambda d: d.find_element(By.ID, "progress-row").is_displayed())
    browser.find_element(By.ID, "cancel").click()
    wait.until(lambda d: d.find_element(By.ID, "file-status").text == "Cancelled.")
    assert not browser.find_element(By.ID, "file-result").is_displayed()
    assert not browser.find_element(By.ID, "progress-row").is_displayed()

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

    # A clean console: no failed load (the favicon), no deprecated ScriptProcessorNode.
    console = browser.get_log("browser")
    assert not [e for e in console if e["level"] == "SEVERE" or "ScriptProcessor" in e["message"]], console
