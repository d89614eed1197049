"""The nightly job says whether the model still fits: baselines at training, drift figures in the run."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

from model import artifact, reference
from model.baseline import CONFIDENCE_BINS, LENGTH_EDGES
from model.sample import generate
from pipelines.app.cli import cli
from pipelines.nightly import drift
from tests.test_batch import read_output

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`

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
    assert sum(base["predicted_label_shares"].values()) == pytest.approx(1.0)
    assert set(base["label_shares"]) == set(artifact.load(result.artifact_dir).labels)
    assert len(base["confidence_histogram"]) == CONFIDENCE_BINS and len(base["length_histogram"]) == len(LENGTH_EDGES)
    assert 0 <= base["oov_share"] < 0.2 and 0 <= base["needs_review_share"] <= 1
    assert base["rows"]["training"] == result.metadata["training"]["split_rows"]["train"]
    stored = pq.read_table(os.path.join(result.artifact_dir, reference.REFERENCE_FILE))
    assert stored.schema == reference.SCHEMA  # counts and ids only: no text column
    assert stored.num_rows == base["reference"]["rows"] == result.metadata["training"]["split_rows"]["test"]
    predicted = pd.Series(stored.column("label").to_numpy()).value_counts(normalize=True)
    labels = artifact.load(result.artifact_dir).labels
    assert {labels[i]: share for i, share in predicted.items()} == pytest.approx(
        {k: v for k, v in base["predicted_label_shares"].items() if v > 0})
    assert all(ids == sorted(ids) for ids in stored.column("word_ids").to_pylist()[:50])  # no word order kept


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
    expected = np.array([base["predicted_label_shares"].get(n, 0.0) for n in labels])  # like with like
    before = first["label"].value_counts(normalize=True).reindex(labels, fill_value=0).to_numpy()
    assert signals["labels_js"]["value"] == pytest.approx(_js(today, expected), abs=1e-5)
    assert signals["labels_linf"]["value"] == pytest.approx(np.abs(today - expected).max(), abs=1e-5)
    assert signals["labels_js_vs_previous"]["value"] == pytest.approx(_js(today, before), abs=1e-5)
    confidence, _ = np.histogram(predictions["confidence"], bins=CONFIDENCE_BINS, range=(0, 1))
    assert signals["confidence_js"]["value"] == pytest.approx(_js(confidence, base["confidence_histogram"]),
                                                              abs=1e-4)
    lengths, _ = np.histogram(predictions["tokens"], bins=[*LENGTH_EDGES, np.inf])
    assert signals["length_js"]["value"] == pytest.approx(_js(lengths, base["length_histogram"]), abs=1e-5)
    oov = predictions["oov_tokens"].sum() / predictions["tokens"].sum()
    assert signals["oov_share_rise"]["value"] == pytest.approx(oov - base["oov_share"], abs=1e-5)
    assert signals["mean_confidence_fall"]["value"] == pytest.approx(
        base["mean_confidence"] - predictions["confidence"].mean(), abs=1e-4)
    assert signals["needs_review_rise"]["value"] == pytest.approx(
        predictions["needs_review"].mean() - base["needs_review_share"], abs=1e-4)
    for name, figures in signals.items():
        assert figures["alert"] == (figures["value"] > figures["threshold"]), name


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


def test_a_model_from_before_the_reference_keeps_the_old_figures_and_says_so(model_dir, archives, tmp_path):
    old = artifact.copy_directory(model_dir, str(tmp_path / "old-model"))
    os.remove(os.path.join(old, reference.REFERENCE_FILE))
    metadata = json.load(open(os.path.join(old, artifact.METADATA_FILE), encoding="utf-8"))
    for key in ("reference", "predicted_label_shares", "predicted_label_shares_of"):
        del metadata["baseline"][key]
    artifact.write_json(os.path.join(old, artifact.METADATA_FILE), metadata)
    result, (_, _, summary) = _label(old, archives["usual"], tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert summary["drift"]["note"] == drift.OLD_BASELINE and summary["drift"]["thresholds"] == "fixed"
    assert {f["threshold"] for n, f in summary["drift"]["signals"].items() if n.endswith("_js")} == {0.1}
    assert sum(line.startswith("  note: this model has no drift reference") for line in result.output.splitlines()) \
        == 1


def test_a_broken_reference_is_one_error_line(model_dir, archives, tmp_path):
    bad = artifact.copy_directory(model_dir, str(tmp_path / "bad-model"))
    with open(os.path.join(bad, reference.REFERENCE_FILE), "wb") as f:
        f.write(b"PAR1 not a reference")
    result, _ = _label(bad, archives["usual"], tmp_path / "out")
    assert result.exit_code == 2 and not os.path.exists(tmp_path / "out" / "_SUCCESS")
    assert result.output.strip().splitlines()[-1].startswith("error: model directory")
    assert "reference.parquet is not a drift reference" in result.output


def test_compare_to_something_that_is_not_an_output_is_one_error_line(model_dir, archives, tmp_path):
    result, _ = _label(model_dir, archives["usual"], tmp_path / "out", "--compare-to", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --compare-to")


def _null_label(table):
    labels = table.column("label").to_pylist()
    labels[3] = None
    return table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, table.schema.field(
        "label").type))


def _nan_confidence(table):
    confidence = table.column("confidence").to_numpy().copy()
    confidence[0] = np.nan
    return table.set_column(table.schema.get_field_index("confidence"), "confidence", pa.array(confidence))


def _null_word(table):
    words = table.column("word_ids").to_pylist()
    words[1] = [*words[1], None]
    return table.set_column(table.schema.get_field_index("word_ids"), "word_ids", pa.array(
        words, table.schema.field("word_ids").type))


@pytest.mark.parametrize(("spoil", "fragment"), [
    (_null_label, "null 'label' values"),
    (_nan_confidence, "not numbers between 0 and 1"),
    (_null_word, "null entries in 'word_ids'"),
])
def test_a_reference_with_nulls_or_nan_is_refused_before_any_work(model_dir, archives, tmp_path, spoil, fragment):
    """Issue #39: what drift reads is checked before the night is labelled, not found broken after it."""
    bad = artifact.copy_directory(model_dir, str(tmp_path / "bad-model"))
    path = os.path.join(bad, reference.REFERENCE_FILE)
    pq.write_table(spoil(pq.read_table(path)), path)
    result, _ = _label(bad, archives["usual"], tmp_path / "out")
    assert result.exit_code == 2 and not os.path.exists(tmp_path / "out")
    assert result.output.strip().splitlines()[-1].startswith("error: model directory") and fragment in result.output


@pytest.mark.parametrize(("summary", "fragment"), [
    ([1, 2], "not a JSON object"),
    ({"labels": {"Kargo": {"share": float("nan")}}}, "no share between 0 and 1"),
    ({"labels": {"Kargo": {"share": 0.4}}, "predicted": "many"}, "'predicted' is not a count"),
    ({"labels": "Kargo"}, "no 'labels' object"),
])
def test_a_compare_to_summary_drift_cannot_read_is_refused_before_any_work(model_dir, archives, tmp_path, summary,
                                                                          fragment):
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "_SUCCESS").write_text("someone")
    (previous / "summary.json").write_text(json.dumps(summary))
    result, _ = _label(model_dir, archives["usual"], tmp_path / "out", "--compare-to", str(previous))
    assert result.exit_code == 2 and not os.path.exists(tmp_path / "out")
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "not a nightly summary" in last and fragment in last, result.output


def test_a_baseline_with_nan_is_refused_before_any_work(model_dir, archives, tmp_path):
    bad = artifact.copy_directory(model_dir, str(tmp_path / "bad-model"))
    path = os.path.join(bad, artifact.METADATA_FILE)
    metadata = json.load(open(path))
    metadata["baseline"]["mean_confidence"] = float("nan")
    artifact.write_json(path, metadata)
    result, _ = _label(bad, archives["usual"], tmp_path / "out")
    assert result.exit_code == 2 and "drift baseline has nan at baseline.mean_confidence" in result.output


HELD_OUT = "Otomotiv"  # the weak model never sees this category


@pytest.fixture(scope="module")
def weak_model_dir(tmp_path_factory):
    """A model that is not yet good (about 25% accuracy, mean confidence about 0.3, a few classes favoured):
    2 epochs on 3,000 generated rows, one category held out."""
    import dataclasses

    from model.data import LabelledData
    from model.train import train
    from tests.conftest import TINY_ARCHITECTURE, TINY_TRAINING

    frame = generate(3200, seed=51)
    frame = frame[frame["category"] != HELD_OUT]
    out = str(tmp_path_factory.mktemp("weak") / "model")
    data = LabelledData(frame["text"].to_numpy(dtype=object), frame["category"].to_numpy(dtype=object), 0, [])
    train(data, out, TINY_ARCHITECTURE, dataclasses.replace(TINY_TRAINING, epochs=2, seed=8, learning_rate=0.003))
    return out


def _night(rows: int, seed: int, held_out_share: float = 0.0) -> pd.DataFrame:
    pool = generate(rows * 40, seed=seed)
    usual = pool[pool["category"] != HELD_OUT].head(round(rows * (1 - held_out_share)))
    new = pool[pool["category"] == HELD_OUT].head(rows - len(usual))
    assert len(usual) + len(new) == rows
    return pd.concat([usual, new]).sample(frac=1, random_state=seed)


@pytest.mark.parametrize("rows", [300, 3000])
def test_a_weak_model_does_not_alert_on_unchanged_data(weak_model_dir, rows, tmp_path):
    metadata = artifact.load(weak_model_dir).metadata
    assert metadata["baseline"]["mean_confidence"] < 0.5  # it is weak
    result, (_, _, summary) = _label(weak_model_dir, _archive(tmp_path / "in", _night(rows, seed=60 + rows)),
                                     tmp_path / "out", "--fail-on-drift")
    assert result.exit_code == 0, result.output
    assert summary["drift"]["alert"] is False, summary["drift"]["signals"]
    assert "words_js" in summary["drift"]["signals"]


@pytest.mark.parametrize("night, expected", [
    (lambda: _night(1000, seed=70, held_out_share=0.3), "words_js"),  # a new topic: words seen, never this mix
    (lambda: generate(20000, seed=71).query("category in ['Alışveriş', 'Beyaz-Eşya', 'Bilgisayar']").head(1000),
     "labels_linf"),
    (lambda: pd.DataFrame({"id": [f"e{i}" for i in range(1000)],
                           "text": [f"{ENGLISH[i % 4]} (order {i})" for i in range(1000)]}), "oov_share_rise"),
], ids=["held-out-category", "three-categories", "english"])
def test_a_weak_model_alerts_on_real_shifts(weak_model_dir, night, expected, tmp_path):
    frame = night()
    assert len(frame) == 1000
    result, (_, _, summary) = _label(weak_model_dir, _archive(tmp_path / "in", frame), tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert summary["drift"]["alert"] is True and expected in summary["drift"]["over_threshold"], \
        summary["drift"]["signals"]


def test_thresholds_shrink_as_the_night_grows_and_stop_at_the_floor(weak_model_dir):
    loaded = artifact.load(weak_model_dir)
    size = loaded.metadata["baseline"]["reference"]["vocabulary_size"]
    ref = reference.read(weak_model_dir, len(loaded.labels), size)
    by_size = {rows: drift.thresholds(ref, rows, 0.5) for rows in (300, 3000, 30000)}
    for name in by_size[300]:
        small, medium, large = (by_size[rows][name] for rows in (300, 3000, 30000))
        assert small > medium or small == drift.FLOORS[name], name
        # past a few thousand rows the reference's own noise (316 test rows here) dominates: they level off,
        # within the estimate's own noise (200 draws)
        assert drift.FLOORS[name] <= large <= medium * 1.15, name
    assert by_size[300]["words_js"] > 1.5 * by_size[3000]["words_js"]
    assert by_size[300]["labels_linf"] > 1.2 * by_size[3000]["labels_linf"]
    assert drift.thresholds(ref, 300, 0.5, override=0.25)["labels_js"] == 0.25


def test_on_a_huge_night_against_a_large_reference_the_floor_holds():
    """Sampling noise vanishes as both sizes grow; the floor keeps a 1% change from alerting."""
    from scipy import sparse

    rng = np.random.default_rng(3)
    rows = 200_000
    big = reference.Reference(label=rng.integers(0, 4, rows), confidence=rng.uniform(0.2, 1, rows),
                              tokens=rng.integers(1, 60, rows), oov=np.zeros(rows, dtype=np.int64),
                              words=sparse.csr_matrix(np.ones((rows, 1))), n_labels=4,
                              word_bins=np.zeros(1, dtype=np.int64))
    limits = drift.thresholds(big, 10**8, 0.5)
    assert limits["labels_linf"] == drift.FLOORS["labels_linf"] and limits["labels_js"] == drift.FLOORS["labels_js"]
