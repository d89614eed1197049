"""The web page: prediction functions directly, then the real page in headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
from click.testing import CliRunner

from model.errors import UserError
from model.sample import generate
from pipelines.app.cli import cli
from pipelines.app.pubsub_admin import free_port
from pipelines.app.web import EMPTY_INPUT, Predictor, verdict


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir, k=3, review_threshold=0.5)


def test_classify_one_matches_the_model(predictor, loaded):
    text = generate(1, seed=8, labelled=False)["text"][0]
    p = predictor.classify_one(text)
    probabilities = loaded.predict([text])[0]
    assert p.label == loaded.labels[int(probabilities.argmax())]
    assert p.confidence == pytest.approx(float(probabilities.max()), abs=1e-6)
    assert p.top[0][0] == p.label and len(p.top) == 3
    assert p.needs_review == (p.confidence < 0.5)
    assert verdict(p).startswith(f"**{p.label}**, confidence {p.confidence:.4f}")


@pytest.mark.parametrize("empty", [None, "", "   \n"])
def test_empty_input_is_a_readable_error(predictor, empty):
    with pytest.raises(UserError, match=EMPTY_INPUT):
        predictor.classify_one(empty)


def test_classify_many_from_lines_and_files(predictor, loaded, tmp_path):
    texts = generate(4, seed=9, labelled=False)["text"].tolist()
    frame = predictor.classify_many("\n".join([texts[0], "", texts[1]]), None)
    assert frame["text"].tolist() == texts[:2]
    assert frame["label"].tolist() == [loaded.labels[int(i)] for i in loaded.predict(texts[:2]).argmax(axis=1)]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "c.csv", index=False)
    assert len(predictor.classify_many("", str(tmp_path / "c.csv"))) == 4
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "c.parquet")
    assert len(predictor.classify_many(None, str(tmp_path / "c.parquet"))) == 4
    pd.DataFrame({"body": texts}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match="no 'text' column"):
        predictor.classify_many(None, str(tmp_path / "bad.csv"))
    with pytest.raises(UserError, match="Paste complaints"):
        predictor.classify_many("  ", None)


def test_header_shows_version_and_metrics(predictor):
    header = predictor.header()
    assert predictor.metadata["model_version"] in header and "accuracy" in header
    shares = predictor.metadata["baseline"]["label_shares"]
    top = max(shares, key=shares.get)
    assert f"Training label distribution: {top} {shares[top]:.1%}" in header


def test_serve_refuses_a_broken_model_directory(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "missing")], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.output.startswith("error: model directory") and "Traceback" not in result.output


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture(scope="module")
def server(model_dir):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pipelines", "serve", "--model", model_dir, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the page did not come up in 90 s"
            time.sleep(0.5)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_page_in_a_real_browser(server, loaded, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    text = "Kargom 12 gündür teslim edilmedi, kurye adreste yok dedi. Paramı geri istiyorum!"
    probabilities = loaded.predict([text])[0]
    label, confidence = loaded.labels[int(probabilities.argmax())], float(probabilities.max())
    browser = _browser()
    try:
        browser.get(server)
        box = WebDriverWait(browser, 60).until(lambda b: b.find_element(By.CSS_SELECTOR, "#complaint textarea"))
        assert loaded.version in browser.find_element(By.TAG_NAME, "body").text
        box.send_keys(text)
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        shown = WebDriverWait(browser, 60).until(lambda b: b.find_element(By.CSS_SELECTOR, "#verdict").text.strip())
        assert shown.startswith(f"{label}, confidence {confidence:.4f}, needs review: ")
        assert label in browser.find_element(By.CSS_SELECTOR, "#top").text
        browser.save_screenshot(str(tmp_path / "prediction.png"))

        box.send_keys(Keys.CONTROL, "a")  # clear() fires no input event, so the page would keep the text
        box.send_keys(Keys.DELETE)
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        error = WebDriverWait(browser, 60).until(
            lambda b: [e.text for e in b.find_elements(By.CSS_SELECTOR, "[data-testid='toast-text']") if e.text])
        assert error == [EMPTY_INPUT]
        assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(tmp_path / "empty.png"))
        assert (tmp_path / "prediction.png").stat().st_size > 10_000
    finally:
        browser.quit()
