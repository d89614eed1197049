"""Serving precisions (issue #31): measured at export, the rule applied where the model is served, `auto`'s choice.

This machine may or may not have bf16 instructions: tests that need `auto` to
consider bf16 say so with `COMPLAINTS_BF16_HARDWARE=yes` (the documented override),
which makes the choice measure both precisions on any CPU; the speed itself is the
benchmarks' business, not these tests'.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from model import artifact, precision
from model.sample import generate
from pipelines.app.cli import cli
from tests.test_cli_model import assert_user_error
from worker import telemetry
from worker.handler import ServingModel
from worker.local import LocalClassifier
from worker.precision_choice import PrecisionSetting, candidates, fastest
from worker.transform import WorkerConfig

TEXTS = generate(1000, seed=77, labelled=False)["text"].tolist()


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def copy_with_record(model_dir: str, tmp_path, name: str, record: dict | None) -> str:
    """A copy of the model directory whose bf16 agreement record is `record` (None: no record at all)."""
    target = artifact.copy_directory(model_dir, str(tmp_path / name))
    artifact.add_to_metadata(target, precision.RECORD_KEY, {} if record is None else {precision.BF16: record})
    return target


def passing(**changes) -> dict:
    return {"rows": 500, "agreement": 0.998, "changed_rows": 1, "max_probability_change": 0.02,
            "max_changed_margin": 0.01, "max_changed_confidence": 0.31, "review_threshold": 0.5,
            "confident_changes": 0, "review_flag_changes": 2, "rows_of": "a test", **changes}


def test_training_records_bf16_against_fp32_on_its_test_split(trained):
    _, result = trained
    record = result.metadata[precision.RECORD_KEY][precision.BF16]
    assert record["rows"] == result.metadata["training"]["split_rows"]["test"]
    assert record["agreement"] >= precision.MIN_AGREEMENT
    assert precision.refusal(result.metadata, precision.BF16, 0.5) is None, record


def test_bf16_as_served_meets_the_rule_and_is_what_export_measured(loaded):
    """The served bf16 core (graph mode, split from the converted model) gives the probabilities the export
    measured with, and its verdicts meet the rule against the served FP32 on rows it never saw."""
    fp32, bf16 = ServingModel(loaded, at=precision.FP32), ServingModel(loaded, at=precision.BF16)
    served32, served16 = fp32(TEXTS)[0], bf16(TEXTS)[0]
    measured16 = precision.probabilities(precision.converted(loaded.model, precision.BF16), TEXTS)
    assert bf16.path == "graph-bf16" and bf16.precision == precision.BF16
    assert np.abs(served16 - measured16).max() <= 1e-5
    assert np.abs(served16 - served32).max() > 0  # it really computes at another precision
    record = precision.agreement(served32, served16, 0.5)
    assert precision.refusal({precision.RECORD_KEY: {precision.BF16: record}}, precision.BF16, 0.5) is None, record


@pytest.mark.parametrize(("record", "threshold", "refused_because"), [
    (passing(), 0.5, None),
    (passing(agreement=0.985), 0.5, "98.50%"),
    (passing(max_changed_confidence=0.62), 0.5, "confidence 0.620"),
    (passing(max_changed_confidence=0.62), 0.7, None),  # a job reviewing below 0.7: that row was uncertain
    (passing(max_changed_confidence=0.31), 0.3, "confidence 0.310"),
    (passing(changed_rows=0, max_changed_confidence=None, agreement=1.0), 0.0, None),
    (passing(rows=0), 0.5, "no bf16 agreement record"),
    (None, 0.5, "no bf16 agreement record"),
])
def test_the_rule(record, threshold, refused_because):
    metadata = {precision.RECORD_KEY: {precision.BF16: record}} if record else {}
    why = precision.refusal(metadata, precision.BF16, threshold)
    assert (why is None) if refused_because is None else (refused_because in why), why
    assert precision.refusal(metadata, precision.FP32, threshold) is None  # FP32 is always allowed


def test_agreement_counts_what_the_rule_and_a_reader_need():
    fp32 = np.array([[0.9, 0.05, 0.05], [0.55, 0.45, 0], [0.4, 0.6, 0], [0.52, 0.3, 0.18]], np.float32)
    other = np.array([[0.88, 0.07, 0.05], [0.45, 0.55, 0], [0.4, 0.6, 0], [0.4, 0.42, 0.18]], np.float32)
    record = precision.agreement(fp32, other, 0.5)
    assert record["rows"] == 4 and record["changed_rows"] == 2 and record["agreement"] == 0.5
    assert record["max_changed_confidence"] == pytest.approx(0.55)
    assert record["max_changed_margin"] == pytest.approx(0.22)
    assert record["confident_changes"] == 2  # 0.55 and 0.52 are at or above 0.5
    assert record["review_flag_changes"] == 1  # 0.52 → 0.42 falls below the threshold; 0.55 → 0.55 does not
    assert record["max_probability_change"] == pytest.approx(0.12)


def test_a_model_without_a_passing_record_is_never_served_below_fp32(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    for name, record in (("failing", passing(agreement=0.9)), ("unmeasured", None)):
        directory = copy_with_record(model_dir, tmp_path, name, record)
        classifier = LocalClassifier(WorkerConfig(directory))  # auto
        assert classifier.slot.current.precision == precision.FP32
        assert "no lower precision allowed" in classifier.slot.current.choice["why"]

        assert_user_error(invoke("predict", "--model", directory, "--precision", "bf16", "kargo gelmedi"),
                          "may not be served at --precision bf16", "--force-precision")
        forced = invoke("predict", "--model", directory, "--precision", "bf16", "--force-precision", "--json",
                        "kargo gelmedi")
        assert forced.exit_code == 0, forced.output
        assert json.loads(forced.output.strip().splitlines()[-1])["label"]


def test_auto_times_the_allowed_precisions_and_serves_the_fastest(model_dir, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    classifier = LocalClassifier(WorkerConfig(model_dir, max_batch_size=64))
    choice = classifier.slot.current.choice
    rates = choice["rows_per_second"]
    assert set(rates) == {precision.FP32, precision.BF16} and all(r > 0 for r in rates.values())
    assert choice["served"] == max(rates, key=rates.get) == classifier.slot.current.precision
    assert telemetry.SERVED_PRECISION.labels(choice["served"])._value.get() == 1
    assert telemetry.PRECISION_RATE.labels(precision.BF16)._value.get() == pytest.approx(rates[precision.BF16], abs=0.1)


def test_without_bf16_instructions_auto_is_fp32_and_spends_nothing_on_measuring(model_dir, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "no")
    _, metadata = artifact.read_metadata(model_dir)
    assert candidates(PrecisionSetting(), metadata, model_dir)[0] == [precision.FP32]
    choice = LocalClassifier(WorkerConfig(model_dir, max_batch_size=32)).slot.current.choice
    assert choice["served"] == precision.FP32 and choice["rows_per_second"] is None
    assert "no bf16 instructions" in choice["why"]


def test_fastest_keeps_the_cheaper_call():
    def work(n: int):
        return lambda: sum(range(n))

    chosen, rates = fastest({"slow": work(400_000), "quick": work(20_000)}, rows=100, rounds=3)
    assert chosen == "quick" and rates["quick"] > rates["slow"]


def test_the_precision_command_records_agreement_in_a_model_directory(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "no")
    directory = copy_with_record(model_dir, tmp_path, "someone-elses", None)
    before = artifact.read_metadata(directory)[1]
    assert_user_error(invoke("predict", "--model", directory, "--precision", "bf16", "kargo gelmedi"),
                      "no bf16 agreement record", "complaints precision")
    labelled = tmp_path / "held-out.parquet"
    pq.write_table(pa.Table.from_pandas(generate(600, seed=78), preserve_index=False), labelled)

    result = invoke("precision", "--model", directory, "--data", str(labelled))

    assert result.exit_code == 0, result.output
    assert "allowed" in result.output and "metadata.json" in result.output
    after = artifact.read_metadata(directory)[1]
    record = after[precision.RECORD_KEY][precision.BF16]
    assert record["rows"] == 600 and "held-out.parquet" in record["rows_of"]
    assert {k: v for k, v in after.items() if k != precision.RECORD_KEY} == \
        {k: v for k, v in before.items() if k != precision.RECORD_KEY}
    assert artifact.load(directory).version == before["model_version"]  # weights untouched: same model
    served = invoke("predict", "--model", directory, "--precision", "bf16", "kargo gelmedi")
    assert served.exit_code == 0, served.output

    assert_user_error(invoke("precision", "--model", str(tmp_path / "nowhere"), "--data", str(labelled)),
                      "does not exist")
    assert_user_error(invoke("precision", "--model", directory, "--data", str(tmp_path / "none.parquet")))


@pytest.mark.slow
def test_the_nightly_job_the_live_job_and_predict_agree_at_bf16(model_dir, monkeypatch):
    """At one precision every path gives one verdict per text; the summary says what was served."""
    from tests import test_jobs_agree as agree

    texts = [*TEXTS[:300], *agree.ODD]
    archive = {"texts": texts, "ids": [f"r{i}" for i in range(len(texts))], "stores": ["s"] * len(texts),
               "files": [(0, len(texts))], "row_group_size": 100}
    work = tempfile.mkdtemp(prefix="bf16-agree-")
    expected = agree.nightly(model_dir, work, archive, ["--precision", "bf16"])
    summary = json.load(open(os.path.join(work, "labelled", "summary.json")))
    assert summary["precision"]["served"] == precision.BF16 and summary["precision"]["setting"] == "bf16"

    agree.live(model_dir, archive, expected, precision.BF16)
    answers = LocalClassifier(WorkerConfig(model_dir, precision=precision.BF16)).classify(
        [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)])
    for i, (_, record) in enumerate(answers):
        assert agree.same((*agree.verdict(record)[:-1], "s") if "label" in record else agree.verdict(record),
                          expected[f"r{i}"][0]), i


def test_the_option_offers_exactly_the_settings_the_core_knows():
    import dataclasses

    field = {f.name: f for f in dataclasses.fields(WorkerConfig)}["precision"]
    assert tuple(field.metadata["choices"]) == precision.SETTINGS and field.default == precision.AUTO
