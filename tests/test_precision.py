"""Serving precisions (issue #31): measured at export, the rule applied where the model is served, `auto`'s choice.

This machine may or may not have bf16 instructions: tests that need `auto` to
consider bf16 say so with `COMPLAINTS_BF16_HARDWARE=yes` (the documented override),
which makes the choice measure every allowed precision on any CPU; the speed itself is
the benchmarks' business, not these tests'. OpenVINO (the `openvino` extra) is in the
dev install, so CI tests its precision too; its bf16 record is measured only where its
CPU plugin computes in bfloat16, and the tests say which they saw.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from click.testing import CliRunner

from model import agreement, artifact, openvino_core, precision
from model.architecture import end_to_end
from model.sample import generate
from model.serving import ServingModel
from pipelines.app.cli import cli
from tests.test_cli_model import assert_user_error
from worker import telemetry
from worker.local import LocalClassifier
from worker.precision_choice import MIN_GAIN, PrecisionSetting, candidates, fastest, why_served
from worker.transform import WorkerConfig

TEXTS = generate(1000, seed=77, labelled=False)["text"].tolist()


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def copy_with_record(model_dir: str, tmp_path, name: str, record: dict | None) -> str:
    """A copy of the model directory whose lower precisions' agreement record is `record` (None: no record)."""
    target = artifact.copy_directory(model_dir, str(tmp_path / name))
    records = {} if record is None else {at: record for at in precision.PRECISIONS[1:]}
    artifact.add_to_metadata(target, precision.RECORD_KEY, records)
    return target


def passing(**changes) -> dict:
    return {"rows": 500, "agreement": 0.998, "changed_rows": 1, "max_probability_change": 0.02,
            "max_changed_margin": 0.01, "max_changed_confidence": 0.31, "review_threshold": 0.5,
            "confident_changes": 0, "review_flag_changes": 2, "rows_of": "a test", **changes}


def test_training_records_each_lower_precision_against_fp32_on_its_test_split(trained):
    _, result = trained
    records = result.metadata[precision.RECORD_KEY]
    for at in precision.PRECISIONS[1:]:
        left_out = precision.unmeasured(result.model, at)
        if left_out:  # e.g. OpenVINO on a CPU without bf16: a record would describe an f32 classifier
            assert at not in records and at == precision.OPENVINO_BF16, left_out
            continue
        record = records[at]
        assert record["rows"] == result.metadata["training"]["split_rows"]["test"]
        assert record["agreement"] >= precision.MIN_AGREEMENT
        assert precision.refusal(result.metadata, at, 0.5) is None, record


def test_bf16_as_served_meets_the_rule_and_is_what_export_measured(loaded):
    """The served bf16 core (graph mode, split from the converted model) gives the probabilities the export
    measured with, and its verdicts meet the rule against the served FP32 on rows it never saw."""
    fp32, bf16 = ServingModel(loaded, precision=precision.FP32), ServingModel(loaded, precision=precision.BF16)
    served32, served16 = fp32(TEXTS)[0], bf16(TEXTS)[0]
    measured16 = agreement.served_probabilities(loaded, TEXTS, precision.BF16)
    assert bf16.path == "graph-bf16" and bf16.precision == precision.BF16
    assert np.abs(served16 - measured16).max() <= 1e-5
    assert np.abs(served16 - served32).max() > 0  # it really computes at another precision
    record = precision.agreement(served32, served16, 0.5)
    assert precision.refusal({precision.RECORD_KEY: {precision.BF16: record}}, precision.BF16, 0.5) is None, record


@pytest.mark.parametrize("temperature", [1.0, 1.7])
def test_the_openvino_graph_computes_what_keras_computes(loaded, temperature):
    """At f32 the hand-built OpenVINO graph (gate order, backward direction, concat, pool, temperature) gives
    Keras' probabilities: what is left at bf16 is the precision, not a different network."""
    model = end_to_end(loaded.model.layers[1], temperature)
    parts = openvino_core.layers(model)
    assert isinstance(parts, openvino_core.Layers), parts
    # the id rows every text maps to: all padding, all out-of-vocabulary, one token, cut at the sequence length
    texts = [*TEXTS, "", "   ", "zzqx qqzx xqzz", "kargo", " ".join(TEXTS[:30]), "😀 ağır işçi ŞİKAYET 中文 \u200b"]
    ids = parts.vectorizer(np.array(texts, dtype=object)).numpy()
    assert (ids == 0).all(axis=1).any() and (ids == 1).any() and (ids != 0).all(axis=1).any()
    got = openvino_core.OpenVinoCore(parts, precision.FP32)(ids)
    expected = model.predict(tf.constant(texts), verbose=0)  # Keras itself: the independent oracle
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_openvino_bf16_as_served_meets_the_rule_and_is_what_export_measured(loaded):
    served = ServingModel(loaded, precision=precision.OPENVINO_BF16)
    probabilities, tokens, _ = served(TEXTS)
    assert served.path == f"openvino-{served.openvino.hint}" and served.precision == precision.OPENVINO_BF16
    measured = agreement.served_probabilities(loaded, TEXTS, precision.OPENVINO_BF16)
    assert np.abs(probabilities - measured).max() <= 1e-5
    fp32, fp32_tokens, _ = ServingModel(loaded, precision=precision.FP32)(TEXTS)
    assert (tokens == fp32_tokens).all()  # the same vectoriser, in TensorFlow
    if served.openvino.hint == "bf16":
        assert np.abs(probabilities - fp32).max() > 0  # it really computes at another precision
    record = precision.agreement(fp32, probabilities, 0.5)
    metadata = {precision.RECORD_KEY: {precision.OPENVINO_BF16: record}}
    assert precision.refusal(metadata, precision.OPENVINO_BF16, 0.5) is None, record


def test_openvino_f32_computes_what_tensorflow_computes_and_export_records_it(trained, loaded):
    """The record `fp32` and `auto` rely on: at export OpenVINO's f32 changed no label and moved no probability
    by more than round-off, and as served it gives TensorFlow's FP32 verdicts on rows it never saw."""
    _, result = trained
    record = result.metadata[precision.RECORD_KEY][precision.OPENVINO_F32]
    assert record["changed_rows"] == 0 and record["max_probability_change"] <= precision.SAME_WITHIN, record
    assert precision.computes_the_same(result.metadata, precision.OPENVINO_F32) is None
    served = ServingModel(loaded, precision=precision.OPENVINO_F32)
    probabilities, tokens, unknown = served(TEXTS)
    fp32, fp32_tokens, fp32_unknown = ServingModel(loaded, precision=precision.FP32)(TEXTS)  # XLA, as jobs serve it
    assert served.path == "openvino-f32" and served.openvino.hint == "f32"
    assert np.abs(probabilities - fp32).max() <= precision.SAME_WITHIN
    assert (probabilities.argmax(axis=1) == fp32.argmax(axis=1)).all()
    assert (tokens == fp32_tokens).all() and (unknown == fp32_unknown).all()


@pytest.mark.parametrize(("record", "same_because"), [
    (passing(changed_rows=0, max_probability_change=4e-7, agreement=1.0, max_changed_confidence=None), None),
    (passing(changed_rows=0, max_probability_change=3e-5, agreement=1.0, max_changed_confidence=None), "3e-05"),
    (passing(changed_rows=1, max_probability_change=4e-7), "changed 1 labels"),
    (passing(changed_rows=0, max_probability_change=None, agreement=1.0), "moved a probability by None"),
    (passing(rows=0), "no openvino-f32 agreement record"),
    (None, "no openvino-f32 agreement record"),
])
def test_computing_the_same_means_no_label_changed_and_only_round_off(record, same_because):
    metadata = {precision.RECORD_KEY: {precision.OPENVINO_F32: record}} if record else {}
    why = precision.computes_the_same(metadata, precision.OPENVINO_F32)
    assert (why is None) if same_because is None else (same_because in why), why
    assert "another precision" in precision.computes_the_same(metadata, precision.OPENVINO_BF16)


def test_fp32_and_auto_serve_openvinos_f32_where_it_computes_the_same_and_is_faster(model_dir, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.delenv("COMPLAINTS_OPENVINO_F32")  # as a user's install has it
    model = artifact.load(model_dir).model
    _, metadata = artifact.read_metadata(model_dir)
    both = [precision.FP32, precision.OPENVINO_F32]
    assert candidates(PrecisionSetting(precision.FP32), metadata, model_dir, model)[0] == both
    assert candidates(PrecisionSetting(), metadata, model_dir, model)[0] == both  # no bf16 instructions (conftest)
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    options, _ = candidates(PrecisionSetting(), metadata, model_dir, model)
    assert options[:2] == both and len(options) == 3 and options[2] in (precision.BF16, precision.OPENVINO_BF16)
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "no")

    choice = LocalClassifier(WorkerConfig(model_dir, precision=precision.FP32, max_batch_size=32)).slot.current.choice
    rates = choice["rows_per_second"]
    assert set(rates) == set(both) and choice["served"] == max(rates, key=rates.get), choice  # by any margin
    assert choice["setting"] == precision.FP32 and "computes the same" in choice["why"]

    # not shown to compute the same (a label moved), switched off, or not installed: TensorFlow alone
    moved = copy_with_record(model_dir, tmp_path, "moved", passing())
    assert candidates(PrecisionSetting(precision.FP32), artifact.read_metadata(moved)[1], moved, model)[0] == \
        [precision.FP32]
    monkeypatch.setenv("COMPLAINTS_OPENVINO_F32", "no")
    assert candidates(PrecisionSetting(precision.FP32), metadata, model_dir, model)[0] == [precision.FP32]
    monkeypatch.delenv("COMPLAINTS_OPENVINO_F32")
    monkeypatch.setattr(openvino_core, "available", lambda: False)
    assert candidates(PrecisionSetting(precision.FP32), metadata, model_dir, model) == ([precision.FP32],
                                                                                       "asked for")


@pytest.mark.parametrize("fails_in", ["__init__", "__call__"])
def test_a_runtime_that_fails_to_load_is_left_out_and_the_rest_serve(model_dir, tmp_path, monkeypatch, fails_in):
    """Whatever a candidate runtime raises while it compiles or serves its first batch (a plugin fault on one
    CPU), `fp32` and `auto` serve among the rest and say so, also where this machine's kept timing had chosen
    it; asked for alone, it fails as before."""
    from worker import precision_cache, slot

    monkeypatch.delenv("COMPLAINTS_OPENVINO_F32")
    monkeypatch.setattr(slot, "_KEPT", {})
    cache = tmp_path / "choices.json"
    monkeypatch.setenv(precision_cache.ENV, str(cache))
    config = WorkerConfig(model_dir, precision=precision.FP32, max_batch_size=32)
    assert len(LocalClassifier(config).slot.current.choice["rows_per_second"]) == 2  # both built and timed
    [(entry_key, entry)] = json.loads(cache.read_text()).items()
    cache.write_text(json.dumps({entry_key: {**entry, "served": precision.OPENVINO_F32}}))  # it had won here

    def broken(self, *args):
        raise RuntimeError("Exception from src/plugins/intel_cpu: unsupported node")

    monkeypatch.setattr(openvino_core.OpenVinoCore, fails_in, broken)
    for kept in (True, False):
        if not kept:
            monkeypatch.setenv(precision_cache.ENV, "off")
        slot._KEPT.clear()
        classifier = LocalClassifier(config)
        choice = classifier.slot.current.choice
        assert choice["served"] == precision.FP32 == classifier.slot.current.precision, choice
        assert "left out, as it failed here: openvino-f32: RuntimeError" in choice["why"], choice
        assert "unsupported node" in choice["why"]
        [(_, record)] = classifier.classify([{"id": "a", "text": "kargo gelmedi"}])
        assert record["label"] in classifier.slot.current.labels
    slot._KEPT.clear()
    with pytest.raises(RuntimeError, match="unsupported node"):
        LocalClassifier(WorkerConfig(model_dir, precision=precision.OPENVINO_F32)).classify(
            [{"id": "a", "text": "kargo gelmedi"}])


def test_a_model_openvino_cannot_take_is_said_so(linear_trained):
    why = precision.unavailable(artifact.load(linear_trained[0]).model, precision.OPENVINO_BF16)
    assert why and "OpenVINO cannot take this model" in why


def test_without_openvino_its_precision_is_refused_in_one_line_and_auto_leaves_it_out(model_dir, monkeypatch):
    monkeypatch.setattr(openvino_core, "available", lambda: False)  # as in an install without the extra
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    assert_user_error(invoke("predict", "--model", model_dir, "--precision", "openvino-bf16", "kargo gelmedi"),
                      "cannot be served at --precision openvino-bf16 here", "pip install -c requirements.lock openvino")
    _, metadata = artifact.read_metadata(model_dir)
    options, _ = candidates(PrecisionSetting(), metadata, model_dir, artifact.load(model_dir).model)
    assert precision.OPENVINO_BF16 not in options and precision.FP32 in options


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

        for at in precision.PRECISIONS[1:]:
            assert_user_error(invoke("predict", "--model", directory, "--precision", at, "kargo gelmedi"),
                              f"may not be served at --precision {at}", "--force-precision")
            forced = invoke("predict", "--model", directory, "--precision", at, "--force-precision", "--json",
                            "kargo gelmedi")
            assert forced.exit_code == 0, forced.output
            assert json.loads(forced.output.strip().splitlines()[-1])["label"]


def test_auto_times_the_allowed_precisions_and_serves_the_fastest(model_dir, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    classifier = LocalClassifier(WorkerConfig(model_dir, max_batch_size=64))
    choice = classifier.slot.current.choice
    rates = choice["rows_per_second"]
    recorded = set(artifact.read_metadata(model_dir)[1][precision.RECORD_KEY])
    bf16 = precision.OPENVINO_BF16 if precision.OPENVINO_BF16 in recorded else precision.BF16  # one bf16 only
    assert set(rates) == {precision.FP32, bf16} and all(r > 0 for r in rates.values())
    # the rule, not the raw maximum: bf16 is served only where it measured at least MIN_GAIN times FP32 (on a
    # CPU that only claims bf16 through COMPLAINTS_BF16_HARDWARE, the two can measure alike and FP32 stays)
    expected = bf16 if rates[bf16] >= MIN_GAIN * rates[precision.FP32] else precision.FP32
    assert choice["served"] == expected == classifier.slot.current.precision, choice
    if expected == precision.FP32 and rates[bf16] > rates[precision.FP32]:
        assert f"FP32 kept: {bf16} measured" in choice["why"], choice["why"]
    assert telemetry.SERVED_PRECISION.labels(choice["served"])._value.get() == 1
    assert telemetry.PRECISION_RATE.labels(bf16)._value.get() == pytest.approx(rates[bf16], abs=0.1)


def test_auto_keeps_what_it_measured_and_builds_only_the_winner_next_time(model_dir, tmp_path, monkeypatch):
    from worker import precision_cache, slot

    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    monkeypatch.setattr(slot, "_KEPT", {})  # what this test serves is not left for the next
    cache = tmp_path / "cache" / "choices.json"
    monkeypatch.setenv(precision_cache.ENV, str(cache))
    config = WorkerConfig(model_dir, max_batch_size=32)
    first = LocalClassifier(config).slot.current.choice
    assert first["measured_now"] and len(first["rows_per_second"]) == 2
    [entry] = json.loads(cache.read_text()).values()
    assert entry["served"] == first["served"] and entry["rows_per_second"] == first["rows_per_second"]

    built = []
    slot._KEPT.clear()  # a fresh process: nothing served yet
    monkeypatch.setattr(slot.ServingModel, "__init__", _recording(slot.ServingModel.__init__, built))
    second = LocalClassifier(config).slot.current.choice
    assert not second["measured_now"] and second["served"] == first["served"] and built == [first["served"]]
    assert str(cache) in second["why"] and second["rows_per_second"] == first["rows_per_second"]

    [(entry_key, good)] = json.loads(cache.read_text()).items()
    edited = [{"served": 3}, {**good, "measured_at": "yesterday"}, {**good, "measured_at": True},
              {**good, "measured_at": float("nan")}, {**good, "measured_at": good["measured_at"] + 86_400},
              {**good, "rows_per_second": {first["served"]: "fast"}}, {**good, "rows_per_second": [1, 2]},
              {**good, "rows_per_second": {first["served"]: -1.0}}, {**good, "rows_per_second": {}},
              {**good, "rows_per_second": {"not-served": 1.0}}]
    for broken in ("{not json", "[]", *(json.dumps({entry_key: e}) for e in edited)):
        cache.write_text(broken)  # a file it cannot use: measured again, and written whole
        slot._KEPT.clear()
        assert LocalClassifier(config).slot.current.choice["measured_now"]
        assert len(json.loads(cache.read_text())) == 1

    slot._KEPT.clear()
    other = LocalClassifier(WorkerConfig(model_dir, max_batch_size=64)).slot.current.choice  # another batch size
    assert other["measured_now"] and len(json.loads(cache.read_text())) == 2

    stale = {k: {**v, "measured_at": v["measured_at"] - (precision_cache.MAX_AGE_DAYS + 1) * 86_400}
             for k, v in json.loads(cache.read_text()).items()}
    cache.write_text(json.dumps(stale))
    slot._KEPT.clear()
    assert LocalClassifier(config).slot.current.choice["measured_now"]  # too old: measured again
    assert len(json.loads(cache.read_text())) == 1  # and the expired entries dropped

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(precision_cache.ENV, str(tmp_path / "a-file" / "choices.json"))  # cannot be written
    slot._KEPT.clear()
    assert LocalClassifier(config).slot.current.choice["measured_now"]  # served all the same

    monkeypatch.setenv(precision_cache.ENV, "off")
    slot._KEPT.clear()
    assert LocalClassifier(config).slot.current.choice["measured_now"]


def _recording(init, built: list):
    def recorded(self, loaded, xla=True, sizes=None, served=precision.FP32):
        built.append(served)
        init(self, loaded, xla, sizes or (32,), served)
    return recorded


def test_auto_considers_tensorflows_bf16_where_openvinos_is_not_allowed(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "yes")
    directory = copy_with_record(model_dir, tmp_path, "tf-only", passing())
    artifact.add_to_metadata(directory, precision.RECORD_KEY, {precision.BF16: passing(),
                                                               precision.OPENVINO_BF16: passing(agreement=0.95)})
    _, metadata = artifact.read_metadata(directory)
    options, _ = candidates(PrecisionSetting(), metadata, directory, artifact.load(directory).model)
    assert options == [precision.FP32, precision.BF16]
    artifact.add_to_metadata(directory, precision.RECORD_KEY, {at: passing() for at in precision.PRECISIONS[1:]})
    _, metadata = artifact.read_metadata(directory)
    options, _ = candidates(PrecisionSetting(), metadata, directory, artifact.load(directory).model)
    assert options == [precision.FP32, precision.OPENVINO_BF16]


def test_without_bf16_instructions_auto_is_fp32_and_spends_nothing_on_measuring(model_dir, monkeypatch):
    monkeypatch.setenv("COMPLAINTS_BF16_HARDWARE", "no")
    _, metadata = artifact.read_metadata(model_dir)
    assert candidates(PrecisionSetting(), metadata, model_dir)[0] == [precision.FP32]
    choice = LocalClassifier(WorkerConfig(model_dir, max_batch_size=32)).slot.current.choice
    assert choice["served"] == precision.FP32 and choice["rows_per_second"] is None
    assert "no bf16 instructions" in choice["why"]


def test_fastest_keeps_the_cheaper_call_and_stops_timing_a_clear_loser(monkeypatch):
    """On a clock the calls themselves move (each call costs its fixed time), so the rule is tested, not this
    machine's noise (two real calls 5% apart swapped places under a busy CI)."""
    from worker import precision_choice

    clock = {"now": 0.0}
    monkeypatch.setattr(precision_choice, "time", type("Clock", (), {"perf_counter": staticmethod(
        lambda: clock["now"])}))
    calls = {"slow": 0, "quick": 0, "close": 0}

    def work(name: str, seconds: float):
        def call():
            calls[name] += 1
            clock["now"] += seconds
        return call

    chosen, rates = fastest({"slow": work("slow", 1.0), "quick": work("quick", 0.010),
                             "close": work("close", 0.0105)}, rows=100, rounds=3, keep_within=0.5)
    assert chosen == "quick" and rates == pytest.approx({"slow": 100.0, "quick": 10_000.0, "close": 9_523.8}, 1e-4)
    assert calls["slow"] == 2  # the untimed call and one round: 100 times slower, never timed again
    assert calls["quick"] == calls["close"] == 4  # within the margin: every round

    calls.update(slow=0, quick=0)
    chosen, _ = fastest({"slow": work("slow", 1.0), "quick": work("quick", 0.010)}, rows=100, rounds=5)
    assert chosen == "quick" and calls == {"slow": 2, "quick": 2, "close": 4}  # one left: no more rounds

    chosen, _ = fastest({"slow": work("slow", 1.0), "quick": work("quick", 0.010)}, rows=100, prefer=("slow",))
    assert chosen == "quick"  # preferred, but far slower
    chosen, rates = fastest({"fp32": work("slow", 0.010), "bf16": work("quick", 0.0095)}, rows=100,
                            prefer=("fp32",))
    assert chosen == "fp32" and rates["bf16"] > rates["fp32"]  # 5% faster is under MIN_GAIN: fp32 stays
    chosen, _ = fastest({"fp32": work("slow", 0.010), "bf16": work("quick", 0.005)}, rows=100, prefer=("fp32",))
    assert chosen == "bf16"  # twice as fast buys the switch

    # FP32's runtimes compute the same: the faster wins by any margin, and a lower precision has to beat it
    same = ("fp32", "openvino-f32")
    chosen, _ = fastest({"fp32": work("slow", 0.010), "openvino-f32": work("quick", 0.0095),
                         "openvino-bf16": work("close", 0.0090)}, rows=100, prefer=same)
    assert chosen == "openvino-f32"  # 5% over TensorFlow: taken; bf16's 5.6% over it is not enough
    chosen, _ = fastest({"fp32": work("slow", 0.010), "openvino-f32": work("quick", 0.0080),
                         "openvino-bf16": work("close", 0.0075)}, rows=100, prefer=same)
    assert chosen == "openvino-f32"  # bf16 is 1.33x TensorFlow's FP32, but only 1.07x the fastest FP32
    chosen, _ = fastest({"fp32": work("slow", 0.010), "openvino-f32": work("quick", 0.0105)}, rows=100, prefer=same)
    assert chosen == "fp32"

    calls.update(slow=0, quick=0)  # the caller made each first call (the slot, while building): none untimed here
    fastest({"slow": work("slow", 1.0), "quick": work("quick", 0.010)}, rows=100, rounds=1, warmed=True)
    assert calls["slow"] == calls["quick"] == 1


def test_the_reason_says_when_fp32_was_kept_against_a_faster_measurement():
    why = "auto: the fastest allowed, timed at load"
    kept = why_served(why, precision.FP32, {precision.FP32: 1000.0, precision.OPENVINO_BF16: 1050.0})
    assert kept.startswith(why) and "openvino-bf16 measured 1.05x FP32" in kept and f"{MIN_GAIN}x" in kept
    assert why_served(why, precision.FP32, {precision.FP32: 1000.0, precision.BF16: 900.0}) == why  # FP32 won
    assert why_served(why, precision.OPENVINO_BF16, {precision.FP32: 1.0, precision.OPENVINO_BF16: 2.0}) == why
    assert why_served(why, precision.FP32, None) == why == why_served(why, precision.FP32, {precision.FP32: 5.0})
    kept = why_served(why, precision.OPENVINO_F32, {precision.FP32: 900.0, precision.OPENVINO_F32: 1000.0,
                                                    precision.OPENVINO_BF16: 1050.0})
    assert "FP32 (openvino-f32) kept: openvino-bf16 measured 1.05x" in kept
    assert why_served(why, precision.OPENVINO_F32, {precision.FP32: 900.0, precision.OPENVINO_F32: 1000.0}) == why


def test_the_precision_command_records_agreement_in_a_model_directory(model_dir, tmp_path):
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
    left_out = precision.unmeasured(artifact.load(directory).model, precision.OPENVINO_BF16)
    if left_out:  # a CPU where OpenVINO computes in f32
        assert precision.OPENVINO_BF16 not in after[precision.RECORD_KEY]
        assert f"openvino-bf16: not measured here, {left_out}" in result.output
    else:
        assert after[precision.RECORD_KEY][precision.OPENVINO_BF16]["rows"] == 600
    assert {k: v for k, v in after.items() if k != precision.RECORD_KEY} == \
        {k: v for k, v in before.items() if k != precision.RECORD_KEY}
    assert artifact.load(directory).version == before["model_version"]  # weights untouched: same model
    served = invoke("predict", "--model", directory, "--precision", "bf16", "kargo gelmedi")
    assert served.exit_code == 0, served.output

    assert_user_error(invoke("precision", "--model", str(tmp_path / "nowhere"), "--data", str(labelled)),
                      "does not exist")
    assert_user_error(invoke("precision", "--model", directory, "--data", str(tmp_path / "none.parquet")))


@pytest.mark.slow
@pytest.mark.parametrize("at", [precision.BF16, precision.OPENVINO_BF16, precision.OPENVINO_F32])
def test_the_nightly_job_the_live_job_and_predict_agree_at_a_lower_precision(model_dir, at):
    """At one precision every path gives one verdict per text; the summary says what was served."""
    from tests import test_jobs_agree as agree

    texts = [*TEXTS[:300], *agree.ODD]
    archive = {"texts": texts, "ids": [f"r{i}" for i in range(len(texts))], "stores": ["s"] * len(texts),
               "files": [(0, len(texts))], "row_group_size": 100}
    work = tempfile.mkdtemp(prefix="bf16-agree-")
    expected = agree.nightly(model_dir, work, archive, ["--precision", at])
    summary = json.load(open(os.path.join(work, "labelled", "summary.json")))
    assert summary["precision"]["served"] == at and summary["precision"]["setting"] == at
    assert summary["precision"]["rows_by_precision"] == {at: summary["predicted"]}

    agree.live(model_dir, archive, expected, at)
    answers = LocalClassifier(WorkerConfig(model_dir, precision=at)).classify(
        [{"id": f"r{i}", "text": t} for i, t in enumerate(texts)])
    for i, (_, record) in enumerate(answers):
        assert agree.same((*agree.verdict(record)[:-1], "s") if "label" in record else agree.verdict(record),
                          expected[f"r{i}"][0]), i


def test_the_option_offers_exactly_the_settings_the_core_knows():
    import dataclasses

    field = {f.name: f for f in dataclasses.fields(WorkerConfig)}["precision"]
    assert tuple(field.metadata["choices"]) == precision.SETTINGS and field.default == precision.AUTO
