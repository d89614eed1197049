"""The web page: prediction functions directly, then the real page in headless Chromium."""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
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


def test_classify_one_matches_the_model(predictor, loaded, serving):
    text = generate(1, seed=8, labelled=False)["text"][0]
    p = predictor.classify_one(text)
    probabilities = serving.probabilities([text])[0]
    assert p.label == loaded.labels[int(probabilities.argmax())]
    assert p.confidence == pytest.approx(float(probabilities.max()), abs=1e-6)
    assert p.top[0][0] == p.label and len(p.top) == 3
    assert p.needs_review == (p.confidence < 0.5)
    assert verdict(p).startswith(f"**{p.label}**, confidence {p.confidence:.4f}")


def test_the_one_complaint_answer_highlights_the_words_that_carry_its_label(predictor, serving):
    """Issue #43: the page explains every answer; a word is highlighted as the model's standardisation sees it
    (`KARGOM` is the explanation's `kargom`), with the label's probability it adds."""
    text = "KARGOM 12 gündür teslim edilmedi, kurye adreste yok dedi. Paramı geri istiyorum!"
    p = predictor.classify_one(text)
    assert p.explanation and len(p.explanation) <= 5
    pieces = predictor.highlighted(p)
    assert "".join(piece for piece, _ in pieces) == text  # the whole text, in order
    marked = {piece: mark for piece, mark in pieces if mark}
    assert marked and all(mark.startswith("+") for mark in marked.values())
    words = dict(p.explanation)
    for piece in marked:
        assert any(w in words for w in serving.words([piece])[0])
    assert "because" in verdict(p)


@pytest.mark.parametrize("empty", [None, "", "   \n"])
def test_empty_input_is_a_readable_error(predictor, empty):
    with pytest.raises(UserError, match=EMPTY_INPUT):
        predictor.classify_one(empty)


def test_classify_many_from_lines_and_files(predictor, loaded, serving, tmp_path):
    texts = generate(4, seed=9, labelled=False)["text"].tolist()
    frame = predictor.classify_many("\n".join([texts[0], "", texts[1]]), None)
    assert frame["text"].tolist() == texts[:2]
    assert frame["label"].tolist() == [loaded.labels[int(i)] for i in serving.probabilities(texts[:2]).argmax(axis=1)]
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


def test_errors_reach_the_page_as_one_sentence(caplog):
    import gradio as gr

    from pipelines.app.web import SERVER_FAULT, plain_errors

    def broken(_):
        raise RuntimeError("/srv/models/secret path leaked")

    def refused(_):
        raise UserError("This complaint has 9 characters, more than this page takes (5).")

    with pytest.raises(gr.Error) as fault:
        plain_errors(broken)("x")
    assert fault.value.message == SERVER_FAULT and "secret" not in str(fault.value)
    assert "secret path leaked" in caplog.text  # the operator still gets the details, in the log
    with pytest.raises(gr.Error, match="more than this page takes"):
        plain_errors(refused)("x")


def test_page_limits_reach_the_app(model_dir):
    from pipelines.app.web import PageLimits, build_app

    limits = PageLimits(queue_size=3, max_text_chars=77, download_minutes=2)
    app = build_app(Predictor(model_dir, k=2, limits=limits))
    assert app._queue.max_size == 3  # a fourth waiting request is told the queue is full
    assert app.delete_cache == (30, 120)
    boxes = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "complaint"]
    assert boxes[0].max_length == 77
    with pytest.raises(UserError, match="78 characters, more than this page takes \\(77\\)"):
        Predictor(model_dir, k=2, limits=limits).classify_one("x" * 78)


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


USER, PASSWORD = "ana", "pw-for-the-test"


@dataclasses.dataclass
class Server:
    url: str
    process: subprocess.Popen
    tmp: pathlib.Path  # the server's TMPDIR: everything it writes lands below

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The real page behind a login, with small limits, writing only below its own TMPDIR."""
    tmp = tmp_path_factory.mktemp("server-tmp")
    users = tmp_path_factory.mktemp("auth") / "users"
    users.write_text(f"# the test's account\n{USER}:{PASSWORD}\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "serve", "--model", model_dir, "--port", str(port),
         "--auth-file", str(users), "--max-upload-mb", "1", "--download-minutes", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp)})
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
    running = Server(url, process, tmp)
    yield running
    running.stop()


def _wait(browser, condition, what: str, secs: float = 60):
    """Stale elements are retried: Gradio re-renders toasts and tables while we read them."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, secs, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"no {what} within {secs} s")


def _sign_in(browser, url: str, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    fields = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "input[type=password]")
                   and b.find_elements(By.TAG_NAME, "input"), "sign-in page")
    assert "Sign in to classify complaints." in browser.find_element(By.TAG_NAME, "body").text
    fields[0].send_keys(USER)
    fields[1].send_keys(password)
    next(b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Login").click()


def _toasts(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    # Each text is read once, from the DOM rather than the rendering: a toast that is still fading in
    # (or out) has a visible text of "" one moment and the message the next.
    found = browser.find_elements(By.CSS_SELECTOR, "[data-testid='toast-text']")
    texts = [e.get_attribute("textContent") or "" for e in found]
    return [t.strip() for t in texts if t.strip()]


def _files_holding(root: pathlib.Path, marker: str) -> list[pathlib.Path]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and marker.encode() in path.read_bytes():
                found.append(path)
        except OSError:  # deleted while we looked
            pass
    return found


@pytest.mark.slow
def test_page_in_a_real_browser(server, loaded, serving, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    text = "Kargom 12 gündür teslim edilmedi, kurye adreste yok dedi. Paramı geri istiyorum!"
    probabilities = serving.probabilities([text])[0]
    label, confidence = loaded.labels[int(probabilities.argmax())], float(probabilities.max())
    browser = _browser()
    try:
        _sign_in(browser, server.url, password="wrong")
        _wait(browser, lambda b: "Incorrect" in b.find_element(By.TAG_NAME, "body").text, "refusal of a bad login")
        assert loaded.version not in browser.find_element(By.TAG_NAME, "body").text
        _sign_in(browser, server.url)
        box = _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#complaint textarea"), "page after login")
        assert loaded.version in browser.find_element(By.TAG_NAME, "body").text
        box.send_keys(text)
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        shown = _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#verdict").text.strip(), "verdict")
        assert shown.startswith(f"{label}, confidence {confidence:.4f}, needs review: ")
        assert label in browser.find_element(By.CSS_SELECTOR, "#top").text
        why = _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#why").text.strip(), "highlighted words")
        assert "+0." in why or "+1." in why  # at least one word marked with what it adds
        browser.save_screenshot(str(tmp_path / "prediction.png"))

        box.send_keys(Keys.CONTROL, "a")  # clear() fires no input event, so the page would keep the text
        box.send_keys(Keys.DELETE)
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        assert _wait(browser, _toasts, "error message") == [EMPTY_INPUT]
        assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
        assert (tmp_path / "prediction.png").stat().st_size > 10_000
    finally:
        browser.quit()


@pytest.mark.slow
def test_many_complaints_leave_nothing_behind(server, tmp_path):
    """Oversize upload refused; formulas escaped in the download; the complaint texts gone from disk
    once answered (the download after its minutes), and the private folder gone when the server stops."""
    from selenium.webdriver.common.by import By

    marker = "Zq7marker kargo gelmedi"
    (tmp_path / "big.csv").write_text("text\n" + "kargo gelmedi\n" * 100_000)  # 1.4 MB > 1 MB
    (tmp_path / "mine.csv").write_text(f'text\n"=HYPERLINK(""http://x"")"\n{marker}\n-5 TL eksik iade\n')
    browser = _browser()
    try:
        _sign_in(browser, server.url)
        tab = _wait(browser, lambda b: [t for t in b.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                        if t.text == "Many complaints"], "tabs")
        tab[0].click()
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(tmp_path / "big.csv"))
        refused = _wait(browser, _toasts, "refusal of the oversize upload")
        assert refused == ['File(s) exceed the maximum allowed size of 1.0 Mb: "big.csv"']
        assert not _files_holding(server.tmp, "kargo gelmedi")

        browser.refresh()
        tab = _wait(browser, lambda b: [t for t in b.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                        if t.text == "Many complaints"], "tabs")
        tab[0].click()
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(tmp_path / "mine.csv"))
        _wait(browser, lambda b: _files_holding(server.tmp, marker), "upload on the server")
        browser.find_element(By.CSS_SELECTOR, "#classify-all").click()
        link = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#download a"), "download link")[0]
        _wait(browser, lambda b: marker in b.find_element(By.CSS_SELECTOR, "#table").text, "the table")
        csv = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.text()).then(done, e => done('failed: ' + e));",
            link.get_attribute("href"))
        rows = pd.read_csv(io.StringIO(csv))
        assert rows["text"].tolist() == ["'=HYPERLINK(\"http://x\")", marker, "'-5 TL eksik iade"]
        held = _files_holding(server.tmp, marker)
        assert [p.name for p in held] == ["predictions.csv"], held  # the upload itself is gone
        deadline = time.monotonic() + 60
        while _files_holding(server.tmp, marker):
            assert time.monotonic() < deadline, "the download outlived its minutes"
            time.sleep(0.5)
    finally:
        browser.quit()
    server.stop()
    assert not list(server.tmp.glob("complaints-page-*")), "the private folder outlived the server"
