"""The review loop page's screenshots of a real Label Studio: `python -m tests.label_studio_screenshot OUT_DIR`.

A real Label Studio (its own tool environment, loopback, offline) gets a project made the
way `complaints review export --label-studio` makes one: the project's labelling config
and review tasks from generated complaints, with the model's label as a prediction,
and answers from two annotators; headless Chromium logs in and photographs the task
list and one task as a reviewer sees it. Run by hand when the labelling config changes.
"""

from __future__ import annotations

import sys
import tempfile

from model.sample import generate
from pipelines.app import label_studio
from tests.label_studio_server import LabelStudio
from tests.screenshots import photograph

USER, PASSWORD = "reviewer@example.com", "not-secret-1"  # tests/label_studio_server.py's


def main(out_dir: str) -> None:
    frame = generate(12, seed=5)
    categories = sorted(generate(400, seed=1)["category"].unique())
    rows = [{"id": f"c-{i}", "text": t, "label": c, "confidence": 0.41 + 0.03 * i, "model_version": "3f2a9c1d07e4",
             "top_k_shown": f"{c} {0.41 + 0.03 * i:.2f}; {categories[0]} 0.22",
             "explanation_shown": "kargo +0.21, iade +0.08",
             "night": "/data/labelled/2026-12-05"}
            for i, (t, c) in enumerate(zip(frame["text"], frame["category"], strict=True))]
    with LabelStudio(tempfile.mkdtemp(prefix="ls-shot-")) as studio:
        project = studio.api("POST", "/api/projects", {"title": "weekly review",
                                                        "label_config": label_studio.labelling_config(categories)})
        studio.api("POST", f"/api/projects/{project['id']}/import", [label_studio.task(r) for r in rows])
        tasks = studio.api("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"]
        for task in tasks[:5]:
            studio.api("POST", f"/api/tasks/{task['id']}/annotations",
                       {"result": [label_studio.choice(task["data"]["model_label"])]})
        photograph(studio.url, [(f"/projects/{project['id']}/data", "label-studio-tasks.png"),
                                (f"/projects/{project['id']}/data?task={tasks[6]['id']}", "label-studio-task.png")],
                   out_dir, 6, _signed_in(studio.url))


def _signed_in(url: str):
    def sign_in(browser) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        browser.get(f"{url}/user/login")
        browser.find_element(By.NAME, "email").send_keys(USER)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        WebDriverWait(browser, 60).until(lambda b: "/user/login" not in b.current_url)  # signed in, redirected
    return sign_in


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
