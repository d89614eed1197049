"""The README stays a user's first screens, and its links lead somewhere.

`mkdocs build --strict` (in .ci/run) checks the links between the pages of docs/; the
README is not one of them (it links into docs/ as GitHub shows it), so its links are
checked here.
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(markdown: str) -> list[str]:
    return [target for target in LINK.findall(markdown) if not re.match(r"[a-z]+:", target)]


def test_every_relative_link_in_the_readme_names_a_file_that_exists():
    links = relative_links((ROOT / "README.md").read_text())
    assert links, "the README links into docs/; a link pattern that finds none is broken"
    missing = [link for link in links if not (ROOT / link.split("#", 1)[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_readme_is_short_enough_to_read():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 300, f"README.md has {lines} lines: move depth to docs/"
