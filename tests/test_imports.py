"""The architecture page lists the house as built. The floors and the absence of import circles are contracts
that `lint-imports` holds in CI (`.importlinter`); the test below checks that those contracts are the ones the
page draws, and that they can fail."""

from __future__ import annotations

import configparser
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_contracts_hold_and_catch_a_violation(tmp_path):
    """`lint-imports` passes on the tree, and fails on a copy whose plumbing imports a sink."""
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    kept = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stdout[-3000:]
    import shutil

    for package in ("model", "worker", "pipelines", "benchmarks"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with open(tmp_path / "pipelines" / "plumbing" / "night.py", "a") as f:
        f.write("\nfrom pipelines.sinks import base  # noqa: E402,F401\n")
    broken = subprocess.run([str(lint)], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert broken.returncode != 0 and "BROKEN" in broken.stdout, broken.stdout[-3000:]


def test_the_page_draws_the_floors_the_contracts_hold():
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / ".importlinter")
    floors = [line.strip() for line in contracts["importlinter:contract:floors"]["layers"].splitlines() if line]
    page = (ROOT / "docs" / "architecture.md").read_text()
    for floor in floors:
        assert f"    {floor}\n" in page.split("## Floors", 1)[1], f"docs/architecture.md's Floors lack {floor!r}"


def listed_modules() -> set[str]:
    """The module list of docs/architecture.md ("Every module"), as paths."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Every module", 1)[1].split("```", 2)[1]
    folders: list[str] = []
    found = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth, name = (len(line) - len(line.lstrip())) // 2, line.split()[0]
        if name.endswith("/"):
            folders = [*folders[:depth], name.rstrip("/")]
        else:
            found.add("/".join([*folders[:depth], name]))
    return found


def test_the_architecture_page_lists_every_module_and_no_other():
    tree = {str(p.relative_to(ROOT)) for package in ("model", "worker", "pipelines")
            for p in (ROOT / package).rglob("*.py")}
    listed = listed_modules()
    assert sorted(tree - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - tree) == [], "docs/architecture.md lists modules that do not exist"
