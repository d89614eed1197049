"""Photographs of a real tool's pages for the docs (`tests/label_studio_screenshot.py`, `tests/mlflow_screenshot.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def photograph(url: str, pages: list[tuple[str, str]], out_dir: str, settle_secs: float,
               signed_in: Callable | None = None) -> None:
    """Each (path, file name) of `pages` under `url`, as headless Chromium draws it, into `out_dir`;
    `signed_in(browser)` logs in first where the tool asks for it."""
    from tests.test_web import _browser

    browser = _browser()
    try:
        if signed_in:
            signed_in(browser)
        for path, name in pages:
            browser.get(url + path)
            time.sleep(settle_secs)  # the page draws itself from its API calls; nothing here to wait on by condition
            browser.save_screenshot(os.path.join(out_dir, name))
    finally:
        browser.quit()
