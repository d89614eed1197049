"""A night's identity (issue #51, item 3): one spelling of its output, one date, in both stores and the journal."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.errors import UserError
from pipelines.plumbing import night


@pytest.mark.parametrize("spellings", [
    ["labelled/x", "./labelled/x", "labelled/x/", "labelled//x", "labelled/y/../x", "./labelled/./x//"],
    ["gs://b/l/2026-12-01", "gs://b/l/2026-12-01/", "GS://b/l//2026-12-01", "gs://b/l/./2026-12-01/"],
    ["gs://b", "gs://b/", "gs://b//"],
])
def test_every_spelling_of_an_output_is_one_night(spellings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len({night.normalised(s) for s in spellings}) == 1


def test_relative_outputs_from_two_folders_are_two_nights(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = night.normalised("labelled/x")
    monkeypatch.chdir(tmp_path / "b")
    assert night.normalised("labelled/x") != first and os.path.isabs(first)


_PART = st.text(alphabet="abc-_.=0123456789", min_size=1, max_size=8).filter(lambda p: p not in (".", ".."))


@given(st.lists(_PART, min_size=1, max_size=5), st.booleans())
def test_normalising_is_idempotent_and_keeps_no_trailing_slash(parts, remote):
    output = ("gs://bucket/" if remote else "/") + "/".join(parts) + "/"
    once = night.normalised(output)
    assert night.normalised(once) == once and not once.endswith("/")


@pytest.mark.parametrize(("output", "date"), [
    ("gs://b/labels/2026-12-01", "2026-12-01"), ("/n/20261201/", "2026-12-01"), ("/n/dt=2026-11-30", "2026-11-30"),
    ("/n/2026-11-30/run-2026-12-02", "2026-12-02"), ("/n/2026-13-45/x", None), ("/n/latest", None),
    ("/n/2026-02-29", None), ("/n/2028-02-29", "2028-02-29"), ("/n/123456789", None),
])
def test_the_night_is_the_last_date_the_output_spells(output, date):
    assert night.in_path(output) == date


def test_an_explicit_night_wins_and_a_bad_one_is_one_line():
    assert night.of_run("/n/2026-12-01", "2026-11-30") == ("2026-11-30", "given")
    assert night.of_run("/n/2026-12-01", None) == ("2026-12-01", "output")
    assert night.of_run("/n/latest", None)[1] == "started"
    with pytest.raises(UserError, match=r"--night '30\.11\.2026' is not a date"):
        night.of_run("/n/x", "30.11.2026")
    with pytest.raises(UserError, match="pass --night"):
        night.of_run("/n/latest", None, needed_by="--bigquery-table")
