"""`complaints compare`: two models on the same rows, with and without labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, f1_score

from model.sample import generate
from pipelines.app.cli import cli

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def _compare(tmp_path, a: str, b: str, frame, *extra) -> tuple[dict, str]:
    frame.to_parquet(tmp_path / "data.parquet")
    result = CliRunner().invoke(cli, ["compare", "--model", a, "--model", b, "--data", str(tmp_path / "data.parquet"),
                                      "--report-dir", str(tmp_path / "report"), *extra])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    return json.loads((tmp_path / "report" / "compare.json").read_text()), result.output


def test_a_model_against_itself_agrees_everywhere(model_dir, tmp_path):
    report, output = _compare(tmp_path, model_dir, model_dir, generate(400, seed=71))
    assert report["agreement"] == 1.0
    assert report["difference"]["accuracy"]["observed"] == 0 and report["difference"]["accuracy"]["ci95"] == [0, 0]
    assert report["difference"]["macro_f1"]["observed"] == 0
    assert report["mcnemar"] == {"only_a_right": 0, "only_b_right": 0, "p_value": 1.0}
    assert "McNemar" in output


def test_a_good_model_beats_a_one_epoch_model_beyond_noise(model_dir, weak_model_dir, loaded, serving, tmp_path):
    frame = generate(800, seed=72)
    report, _ = _compare(tmp_path, weak_model_dir, model_dir, frame)
    good = [loaded.labels[i] for i in serving.probabilities(frame["text"].tolist()).argmax(axis=1)]
    assert report["b"]["accuracy"] == pytest.approx(accuracy_score(frame["category"], good))
    assert report["b"]["macro_f1"] == pytest.approx(f1_score(frame["category"], good, average="macro"))
    difference = report["difference"]["accuracy"]
    assert difference["observed"] > 0 and difference["excludes_zero"] and difference["ci95"][0] > 0
    assert report["difference"]["macro_f1"]["ci95"][0] > 0
    assert report["mcnemar"]["only_b_right"] > report["mcnemar"]["only_a_right"]
    assert report["mcnemar"]["p_value"] < 0.01
    assert set(report["per_class_f1"]) == set(frame["category"])


def test_without_labels_the_flip_matrix_accounts_for_every_row(model_dir, weak_model_dir, tmp_path):
    frame = generate(500, seed=73, labelled=False)
    report, output = _compare(tmp_path, model_dir, weak_model_dir, frame)
    assert report["mode"] == "unlabelled" and report["rows"] == 500
    assert sum(n for row in report["flip_matrix"].values() for n in row.values()) == 500
    flips = sum(f["rows"] for f in report["flips"])
    assert report["agreement"] == pytest.approx(1 - flips / 500)
    assert sum(report["change_by_label"].values()) == 0
    assert "agreement" in output and np.isfinite(report["a"]["mean_confidence"])


def test_compare_needs_exactly_two_models(model_dir, tmp_path):
    generate(10, seed=1).to_parquet(tmp_path / "d.parquet")
    result = CliRunner().invoke(cli, ["compare", "--model", model_dir, "--data", str(tmp_path / "d.parquet")])
    assert result.exit_code == 2 and "exactly two models" in result.output
