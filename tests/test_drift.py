"""The nightly job says whether the model still fits: baselines at training, drift figures in the run."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

from model import artifact
from model.baseline import CONFIDENCE_BINS, LENGTH_EDGES
from model.sample import generate
from pipelines import drift
from pipelines.app.cli import cli
from tests.test_batch import read_output

ENGLISH = ["The parcel never arrived and customer service does not answer my calls",
           "My internet connection drops every evening and nobody fixes it",
           "The bank charged me twice for the same transfer last week",
           "The hotel room was dirty and the staff were rude to us"]


def _js(p, q) -> float:
    return float(jensenshannon(p, q, base=2) ** 2)  # SciPy gives the distance: the divergence's square root


def _archive(path, frame: pd.DataFrame) -> str:
    os.makedirs(path, exist_ok=True)
    frame[["id", "text"]].to_parquet(os.path.join(path, "part-0.parquet"))
    return os.path.join(path, "*.parquet")


def _label(model_dir, pattern, output, *extra) -> tuple:
    result = CliRunner().invoke(cli, ["label", "--model", model_dir, "--input", pattern, "--output", str(output),
                                      "--no-progress", *extra])
    return result, (read_output(output) if os.path.exists(os.path.join(output, "_SUCCESS")) else None)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    usual = generate(1500, seed=41)
    three = generate(3000, seed=42)
    three = three[three["category"].isin(sorted(three["category"].unique())[:3])]
    english = pd.DataFrame({"id": [f"e{i}" for i in range(300)],
                            "text": [f"{ENGLISH[i % 4]} (order {i})" for i in range(300)]})
    return {name: _archive(root / name, frame) for name, frame in
            (("usual", usual), ("three", three), ("english", english))}


def test_js_divergence_and_linf_match_scipy_and_numpy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
        assert drift.js_divergence(list(p), list(q)) == pytest.approx(_js(p, q), abs=1e-9)
    figures = drift.label_figures({"a": 0.5, "b": 0.5}, {"b": 0.2, "c": 0.8})
    assert figures["linf_distance"] == pytest.approx(0.8)
    assert figures["js_divergence"] == pytest.approx(_js([0.5, 0.5, 0], [0, 0.2, 0.8]), abs=1e-6)


def test_training_records_a_baseline(trained):
    _, result = trained
    base = result.metadata["baseline"]
    assert sum(base["label_shares"].values()) == pytest.approx(1.0)
    assert set(base["label_shares"]) == set(artifact.load(result.artifact_dir).labels)
    assert len(base["confidence_histogram"]) == CONFIDENCE_BINS and len(base["length_histogram"]) == len(LENGTH_EDGES)
    assert 0 <= base["oov_share"] < 0.2 and 0 <= base["needs_review_share"] <= 1
    assert base["rows"]["training"] == result.metadata["training"]["split_rows"]["train"]


def test_an_archive_like_the_training_data_does_not_alert(model_dir, archives, tmp_path):
    result, (_, _, summary) = _label(model_dir, archives["usual"], tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert summary["drift"]["alert"] is False, summary["drift"]["over_threshold"]
    assert "drift: OK" in result.output and "labels_js" in result.output
    assert os.path.getsize(tmp_path / "out" / "report.png") > 10_000


def test_drift_figures_equal_an_independent_computation_on_the_committed_files(model_dir, loaded, archives,
                                                                                tmp_path):
    _, (first, _, _) = _label(model_dir, archives["usual"], tmp_path / "night-1")
    _, (predictions, _, summary) = _label(model_dir, archives["three"], tmp_path / "night-2", "--compare-to",
                                          str(tmp_path / "night-1"))
    base, signals = loaded.metadata["baseline"], summary["drift"]["signals"]
    labels = sorted(set(base["label_shares"]) | set(predictions["label"]) | set(first["label"]))
    today = predictions["label"].value_counts(normalize=True).reindex(labels, fill_value=0).to_numpy()
    training = np.array([base["label_shares"].get(n, 0.0) for n in labels])
    before = first["label"].value_counts(normalize=True).reindex(labels, fill_value=0).to_numpy()
    assert signals["labels_js"]["value"] == pytest.approx(_js(today, training), abs=1e-5)
    assert signals["labels_linf"]["value"] == pytest.approx(np.abs(today - training).max(), abs=1e-5)
    assert signals["labels_js_vs_previous"]["value"] == pytest.approx(_js(today, before), abs=1e-5)
    confidence, _ = np.histogram(predictions["confidence"], bins=CONFIDENCE_BINS, range=(0, 1))
    assert signals["confidence_js"]["value"] == pytest.approx(_js(confidence, base["confidence_histogram"]),
                                                              abs=1e-5)
    lengths, _ = np.histogram(predictions["tokens"], bins=[*LENGTH_EDGES, np.inf])
    assert signals["length_js"]["value"] == pytest.approx(_js(lengths, base["length_histogram"]), abs=1e-5)
    oov = predictions["oov_tokens"].sum() / predictions["tokens"].sum()
    assert signals["oov_share_rise"]["value"] == pytest.approx(oov - base["oov_share"], abs=1e-5)
    assert signals["mean_confidence_fall"]["value"] == pytest.approx(
        base["mean_confidence"] - predictions["confidence"].mean(), abs=1e-5)
    assert signals["needs_review_rise"]["value"] == pytest.approx(
        predictions["needs_review"].mean() - base["needs_review_share"], abs=1e-5)


@pytest.mark.parametrize("archive, expected", [
    ("three", {"labels_js", "labels_linf"}),  # three categories only
    ("english", {"oov_share_rise", "labels_js"}),  # another language: words the model never saw
])
def test_a_shifted_archive_alerts_and_fail_on_drift_exits_3_after_committing(model_dir, archives, archive,
                                                                              expected, tmp_path):
    result, (predictions, _, summary) = _label(model_dir, archives[archive], tmp_path / "out", "--fail-on-drift")
    assert result.exit_code == 3, result.output
    assert (tmp_path / "out" / "_SUCCESS").exists() and len(predictions) == summary["predicted"] > 0
    assert summary["drift"]["alert"] is True
    assert expected <= set(summary["drift"]["over_threshold"])
    assert "drift: ALERT" in result.output


def test_a_model_from_before_baselines_still_serves(model_dir, archives, tmp_path):
    old = artifact.copy_directory(model_dir, str(tmp_path / "old-model"))
    metadata = json.load(open(os.path.join(old, artifact.METADATA_FILE), encoding="utf-8"))
    del metadata["baseline"]
    artifact.write_json(os.path.join(old, artifact.METADATA_FILE), metadata)
    result, (predictions, _, summary) = _label(old, archives["usual"], tmp_path / "out", "--fail-on-drift")
    assert result.exit_code == 0, result.output
    assert summary["drift"]["baseline"] is None and summary["drift"]["alert"] is False
    assert len(predictions) == summary["predicted"] > 0


def test_compare_to_something_that_is_not_an_output_is_one_error_line(model_dir, archives, tmp_path):
    result, _ = _label(model_dir, archives["usual"], tmp_path / "out", "--compare-to", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --compare-to")
