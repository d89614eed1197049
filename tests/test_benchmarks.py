"""Smoke runs of the benchmarks, so they keep working: the speeds are not checked, their bookkeeping is."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # whole jobs, services or trainings: left out of `pytest -m "not slow"`


def test_throughput_benchmark_smoke(tmp_path):
    out = tmp_path / "throughput.json"
    subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--rows", "200", "--small", "--skip-4n",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    variants = {r["variant"]: r for r in report["results"]}
    assert set(variants) == {"raw", "raw-xla", "raw-bf16", "raw-openvino-bf16", "raw-openvino-f32", "keras-predict",
                             "per-text", "stock-runinference", "label", "label-fp32", "label-tensorflow-fp32",
                             "label-bf16", "label-openvino-bf16", "label-openvino-f32", "label-xla", "label-graph",
                             "label-mp", "label-dask", "label-dask-warm"}
    assert "OpenVINO at f32" in variants["raw-openvino-f32"]["note"] and variants["raw-openvino-bf16"]["reviews_per_s"]
    assert report["targets"]["label-openvino-bf16/label-fp32"] == pytest.approx(
        variants["label-openvino-bf16"]["reviews_per_s"] / variants["label-fp32"]["reviews_per_s"])
    # what each FP32 job served is in its note: TensorFlow where OpenVINO's f32 is switched off, else the faster
    assert variants["label-tensorflow-fp32"]["note"].endswith("COMPLAINTS_OPENVINO_F32=no")
    assert variants["label-fp32"]["note"].split("served ")[1] in ("fp32", "openvino-f32")
    assert report["targets"]["label-fp32/label-tensorflow-fp32"] == pytest.approx(
        variants["label-fp32"]["reviews_per_s"] / variants["label-tensorflow-fp32"]["reviews_per_s"])
    assert report["machine"]["cpu_class"] in ("AMX", "AVX-512 BF16 without AMX", "AVX-512 without BF16",
                                              "AVX2 only", "without AVX2")
    assert variants["label-dask"]["reviews_per_s"] > 0 and variants["label-dask-warm"]["reviews_per_s"] > 0
    assert report["targets"]["label-dask/label"] == pytest.approx(
        variants["label-dask"]["reviews_per_s"] / variants["label"]["reviews_per_s"])
    assert report["raw_xla"]["path"] == "xla" and report["raw"]["path"] == "graph"
    raw = variants["raw"]["reviews_per_s"]
    for name in ("raw", "raw-xla", "raw-bf16", "keras-predict", "per-text", "label", "label-fp32", "label-xla",
                 "label-graph", "label-mp"):
        assert variants[name]["reviews_per_s"] > 0
        assert variants[name]["ratio_to_raw"] == pytest.approx(variants[name]["reviews_per_s"] / raw)
    assert report["targets"]["label/raw"] == pytest.approx(variants["label"]["ratio_to_raw"])
    assert report["targets"]["label/raw-xla"] == pytest.approx(
        variants["label"]["reviews_per_s"] / variants["raw-xla"]["reviews_per_s"])
    assert report["targets"]["label/keras-predict"] == pytest.approx(
        variants["label"]["reviews_per_s"] / variants["keras-predict"]["reviews_per_s"])
    fixed = report["fixed"]
    assert fixed["prepare_xla_s"] > 0 and fixed["prepare_graph_s"] > 0 and fixed["label_10_rows_xla_s"] > 0
    raw_xla_seconds = 200 / variants["raw-xla"]["reviews_per_s"]
    assert fixed["label/raw-xla ceiling"] == pytest.approx(raw_xla_seconds / (raw_xla_seconds + fixed["prepare_xla_s"]))
    assert report["targets"]["label/raw-xla ceiling"] == fixed["label/raw-xla ceiling"]
    raw_seconds = 200 / raw
    assert fixed["label/raw ceiling"] == pytest.approx(raw_seconds / (raw_xla_seconds + fixed["prepare_xla_s"]))
    assert report["targets"]["label/label-fp32 (auto over fp32)"] == pytest.approx(
        variants["label"]["reviews_per_s"] / variants["label-fp32"]["reviews_per_s"])
    assert "graph-bf16" in variants["raw-bf16"]["note"]
    assert isinstance(report["machine"]["isa_features"], list)
    stock = variants["stock-runinference"]  # the dev install has the bench extra: Beam's own handler must run
    assert stock["note"] == "ok" and stock["reviews_per_s"] > 0, stock


def test_interleaved_benchmark_smoke(model_dir, tmp_path):
    out = tmp_path / "interleaved.json"
    subprocess.run([sys.executable, "-m", "benchmarks.interleaved", "--model", model_dir, "--rows", "200",
                    "--rounds", "2", "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"label", "label-fp32", "label-tensorflow-fp32", "label-dask"}
    assert all(len(rates) == 2 and min(rates) > 0 for rates in report["runs"].values())
    medians = report["medians"]
    assert medians["label-dask (warm rounds)"] == report["runs"]["label-dask"][1]
    assert report["ratios"]["label/label-fp32"] == pytest.approx(medians["label"] / medians["label-fp32"])


def test_interleaved_benchmark_with_the_lower_precisions(model_dir, tmp_path):
    out = tmp_path / "interleaved.json"
    subprocess.run([sys.executable, "-m", "benchmarks.interleaved", "--model", model_dir, "--rows", "100",
                    "--rounds", "1", "--no-dask", "--lower", "--out", str(out)], check=True, capture_output=True,
                   timeout=600)
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"label", "label-fp32", "label-tensorflow-fp32", "label-openvino-bf16",
                                   "label-bf16"}
    # the tests' COMPLAINTS_BF16_HARDWARE=no and COMPLAINTS_OPENVINO_F32=no, inherited
    assert report["auto_served"] == ["fp32"] == report["fp32_served"]


def test_precision_parts_benchmark_smoke(model_dir, tmp_path):
    out = tmp_path / "parts.json"
    subprocess.run([sys.executable, "-m", "benchmarks.precision_parts", "--model", model_dir, "--batch", "64",
                    "--batches", "2", "--rounds", "1", "--out", str(out)], check=True, capture_output=True,
                   timeout=600)
    report = json.loads(out.read_text())
    parts = report["us_per_row"]
    assert {f"{kind} {at}" for kind in ("core", "serve", "classify")
            for at in ("fp32", "bf16", "openvino-bf16", "openvino-f32")} == set(parts) and min(parts.values()) > 0
    fp32 = parts["classify fp32"]
    assert report["ceilings"]["openvino-bf16"] == pytest.approx(
        fp32 / (fp32 - parts["core fp32"] + parts["core openvino-bf16"]))


def test_stream_latency_benchmark_smoke(model_dir, tmp_path):
    out = tmp_path / "latency.json"
    subprocess.run([sys.executable, "-m", "benchmarks.stream_latency", "--model", model_dir, "--backlog", "200",
                    "--beam-backlog", "20", "--rate", "10", "--seconds", "2", "--grace", "120", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    reads = {r["read"]: r for r in json.loads(out.read_text())["results"]}
    assert set(reads) == {"late-ack", "late-ack-estimated", "beam"}
    for figures in reads.values():
        assert figures["backlog"]["received"] == figures["backlog"]["messages"]
        assert figures["steady"]["received"] == figures["steady"]["messages"] == 20
        assert figures["backlog"]["throughput_per_s"] > 0 and figures["peak_rss_mb"] > 0
        assert 0 < figures["steady"]["latency_p50_s"] <= figures["steady"]["latency_p95_s"]
    assert reads["beam"]["backlog"]["max_batch_size"] <= 10  # Beam's local reader: 10 messages a pull
    assert reads["late-ack"]["backlog"]["max_batch_size"] >= 32  # bulk pulls fill whole batches


def test_stream_latency_benchmark_with_a_black_holed_registry_and_a_challenger(model_dir, retrained_model_dir,
                                                                              tmp_path):
    out = tmp_path / "latency.json"
    subprocess.run([sys.executable, "-m", "benchmarks.stream_latency", "--model", model_dir, "--challenger",
                    retrained_model_dir, "--reads", "late-ack-blackhole,late-ack-shadow", "--backlog", "200",
                    "--rate", "10", "--seconds", "3", "--grace", "120", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    reads = {r["read"]: r for r in json.loads(out.read_text())["results"]}
    assert set(reads) == {"late-ack-blackhole", "late-ack-shadow"}
    for figures in reads.values():  # every message answered while the registry never answered
        assert figures["backlog"]["received"] == figures["backlog"]["messages"] == 200
        assert figures["steady"]["received"] == figures["steady"]["messages"] == 30
    assert reads["late-ack-blackhole"]["registry_connections_unanswered"] >= 1  # the watch did ask, and waits


def test_shadow_cost_benchmark_smoke(tmp_path):
    out = tmp_path / "shadow.json"
    subprocess.run([sys.executable, "-m", "benchmarks.shadow_cost", "--rows", "300", "--rounds", "1", "--small",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    alone, shadowed = report["runs"]
    assert (alone["variant"], shadowed["variant"]) == ("champion only", "with --shadow")
    assert alone["agreement"] is None and 0 <= shadowed["agreement"] <= 1  # the challenger was paired row by row
    assert report["summary"]["ratios"] == [round(alone["seconds"] / shadowed["seconds"], 3)]


def test_linear_serving_benchmark_smoke(tmp_path):
    out = tmp_path / "linear.json"
    subprocess.run([sys.executable, "-m", "benchmarks.linear_serving", "--data", str(tmp_path / "absent.parquet"),
                    "--rows", "300", "--batch-sizes", "32", "--repeat", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=400)
    report = json.loads(out.read_text())
    assert report["dataset"] == "generated" and report["texts"] == 300
    assert [r["variant"] for r in report["results"]] == ["dense", "sparse"]
    assert all(r["reviews_per_s"]["32"] > 0 and r["features"] > 0 for r in report["results"])


def test_model_swap_benchmark_smoke(model_dir, retrained_model_dir, tmp_path):
    out = tmp_path / "swap.json"
    subprocess.run([sys.executable, "-m", "benchmarks.model_swap", "--model-a", model_dir, "--model-b",
                    retrained_model_dir, "--swaps", "2", "--interval", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["swaps"] == 2 and len(report["latencies_s"]) == 2
    assert all(0 < seconds <= report["max_s"] for seconds in report["latencies_s"])


def test_training_scale_benchmark_smoke(tmp_path):
    out = tmp_path / "scale.json"
    subprocess.run([sys.executable, "-m", "benchmarks.training_scale", "--rows", "600", "--architectures",
                    "linear,bilstm", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    linear, bilstm = json.loads(out.read_text())["results"]
    for run in (linear, bilstm):
        assert run["rows"] == 600 and run["peak_rss_mb"] > 100 and 0 <= run["test_accuracy"] <= 1
        assert 0 < sum(run["phases"].values()) <= run["wall_seconds"]
        assert {"reading", "evaluating on the test split", "exporting the model"} <= set(run["phases"])
    assert linear["chosen"] == "linear" and "fitting the softmax layer (L-BFGS)" in linear["phases"]
    assert linear["solver"]["iterations"] >= 1 and linear["seconds_per_epoch"] is None
    assert bilstm["seconds_per_epoch"] == bilstm["phases"]["epoch 1"]
    assert bilstm["seconds_per_refit_epoch"] == bilstm["phases"]["refit epoch 1"]


def test_calibration_size_benchmark_smoke(tmp_path):
    out = tmp_path / "calibration.json"
    subprocess.run([sys.executable, "-m", "benchmarks.calibration_size", "--rows", "3000", "--draws", "2",
                    "--folds", "2", "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    validation = report["whole_validation"]["rows"]
    assert [row["validation_rows"] for row in report["by_size"]] == [250]  # sizes below the split's 300
    sets = {row["fitted_on"]: row for row in report["out_of_fold"]}
    assert sets["validation"]["rows"] == validation
    assert sets["validation + out-of-fold"]["rows"] == validation + sets["out-of-fold"]["rows"]
    assert all(row["temperature"] > 0 and 0 <= row["test_ece"] <= 1 for row in sets.values())


def test_quality_benchmark_pairs_each_refit_with_the_same_seeds_split_trained_model():
    from benchmarks.quality import refit_effect

    def row(seed, final_fit, accuracy, model="linear"):
        name = model if final_fit == "train" else f"{model} + refit ({final_fit})"
        return {"dataset": "d", "model": name, "seed": seed, "final_fit": final_fit, "test_rows": 100,
                "accuracy": accuracy}

    rows = [row(1, "train", 0.80), row(1, "train+validation", 0.83), row(2, "train", 0.90),
            row(2, "train+validation", 0.88), row(3, "train", 0.85), row(3, "train+validation", 0.85),
            row(4, "train+validation", 0.99),  # no split-trained model for seed 4: not paired
            {"dataset": "d", "model": "sklearn word tf-idf + LR", "seed": 1, "accuracy": 0.7, "ece": None}]
    (effect,) = refit_effect(rows)
    assert effect["seeds"] == [1, 2, 3]
    assert effect["test_rows_gained"] == [3, -2, 0]
    assert (effect["wins"], effect["ties"], effect["losses"]) == (1, 1, 1)
    assert effect["mean_change_pt"] == pytest.approx(100 * (0.03 - 0.02 + 0.0) / 3)
    assert effect["change_vs_before_correlation"] < 0  # the lucky split's seed is the one that loses


def test_dead_letters_benchmark_smoke(tmp_path):
    out = tmp_path / "dead_letters.json"
    subprocess.run([sys.executable, "-m", "benchmarks.dead_letters", "--rows", "300,600", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    results = json.loads(out.read_text())["results"]
    assert [(r["rows"], r["archive"]) for r in results] == [
        (300, "all-null text"), (300, "valid text"), (600, "all-null text"), (600, "valid text")]
    for r in results:
        assert r["peak_rss_mb"] > 0 and r["dead_lettered"] + r["predicted"] == r["rows"]
        if r["archive"] == "all-null text":
            assert r["dead_lettered"] == r["rows"]


def test_drift_benchmark_smoke(tmp_path):
    out = tmp_path / "drift.json"
    subprocess.run([sys.executable, "-m", "benchmarks.drift", "--nights", "1", "--sizes", "300", "--pool", "2000",
                    "--shift-rows", "200", "--train-rows", "1500", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    cells = {(r["model"], r["night"], r["rows"]) for r in report["results"]}
    assert cells == {(m, n, r) for m in ("weak", "strong") for n, r in [
        ("unchanged", 300), ("held-out category 30%", 200), ("three categories", 200), ("English", 200)]}
    for r in report["results"]:
        assert 0 <= r["alerts"] <= r["nights"] == 1
        assert r["goal_met"] == (r["alerts"] <= 1 if r["night"] == "unchanged" else r["alerts"] == 1)
        assert bool(r["signals_alerting"]) == (r["alerts"] > 0)


def test_explain_benchmark_smoke(model_dir, linear_trained, tmp_path):
    out = tmp_path / "explain.json"
    subprocess.run([sys.executable, "-m", "benchmarks.explain", "--bilstm", model_dir, "--linear",
                    linear_trained[0], "--rows", "64", "--rounds", "1", "--out", str(out)], check=True,
                   capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    variants = {(r["model"], r["variant"]): r for r in report["results"]}
    assert set(variants) == {(m, v) for m in ("bilstm", "linear") for v in ("none", "needs_review", "all")}
    for model in ("bilstm", "linear"):
        assert variants[(model, "none")]["ratio_to_none"] == 1.0
        assert variants[(model, "all")]["rows_explained"] == 1.0
        assert 0 <= variants[(model, "needs_review")]["rows_explained"] <= 1


def test_explain_long_texts_benchmark_smoke(model_dir, tmp_path):
    out = tmp_path / "explain_long.json"
    subprocess.run([sys.executable, "-m", "benchmarks.explain_long", "--model", model_dir, "--rows", "30", "--chars",
                    "3000", "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert [r["variant"] for r in report["results"]] == ["none", "--explain 3", "--explain 3 --explain-all"]
    assert all(r["rows"] == 30 and r["peak_rss_mb"] > 0 and r["rows_per_second"] > 0 for r in report["results"])
    assert report["results"][0]["ratio_to_none"] == 1.0 and report["chars"] == 3000


def test_review_loop_benchmark_smoke(tmp_path):
    from model.sample import generate
    from pipelines.app.files import write_frame

    write_frame(generate(400, seed=1)[["text", "category"]], str(tmp_path / "train.parquet"))
    write_frame(generate(120, seed=2)[["text", "category"]], str(tmp_path / "test.parquet"))
    out = tmp_path / "loop.json"
    subprocess.run([sys.executable, "-m", "benchmarks.review_loop", "--data", str(tmp_path / "train.parquet"),
                    "--test", str(tmp_path / "test.parquet"), "--start", "100", "--per-round", "50", "--rounds", "2",
                    "--seeds", "1", "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert [row["labels"] for row in report["curve"]] == [100, 150, 200]
    assert all(0 <= row[s]["mean"] <= 1 for row in report["curve"] for s in ("least certain", "random"))
    assert set(report["reviewed_rows_per_accuracy_point"]) == {"least certain", "random"}
    assert (tmp_path / "loop.png").read_bytes()[:4] == b"\x89PNG"


def test_pretrained_benchmark_pairs_every_variant_on_the_same_folds_and_applies_the_rule(tmp_path):
    """Generated rows in the shared data's layout: every variant, the distilled table and the encoder run, and the
    decision follows from the table the run wrote (the rule, not a fixed answer)."""
    from benchmarks.pretrained import decide
    from model.sample import generate

    for name, seed in (("sikayetvar_belediye_tr", 1), ("cfpb_narratives_en", 2)):
        (tmp_path / name).mkdir()
        frame = generate(1500, seed=seed)
        frame = frame[frame["category"].isin(frame["category"].value_counts().index[:4])].iloc[:300]
        frame.iloc[:240].to_parquet(tmp_path / name / "train.parquet")  # 4 classes: enough rows for inner folds
        frame.iloc[240:].to_parquet(tmp_path / name / "test.parquet")
    out = tmp_path / "pretrained.json"
    subprocess.run([sys.executable, "-m", "benchmarks.pretrained", "--shared", str(tmp_path), "--repeats", "1",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    for data in report["datasets"].values():
        assert data["rows"] == 300 and data["costs"]["static_words"] > 100 and data["costs"]["e5_texts_per_s"] > 0
        variants = data["variants"]
        assert set(variants) == {"svm", "svm+static", "svm+e5", "static", "linear", "e5-linear"}
        assert 0 < variants["e5-linear"]["texts_per_s"]  # measured through the served model, with the encoder
        assert all(v["folds"] == 5 and 0 < v["accuracy"] <= 1 for v in variants.values())
        assert variants["svm"]["accuracy_vs_svm"] == 0 and variants["svm+e5"]["texts_per_s"] is None
    assert report["decision"] == decide(report["datasets"]) and "svm" not in report["decision"]
    assert not report["decision"]["svm+e5"]["kept"]  # encoder-bound: under 1,000 texts/s whatever its accuracy


def test_e5_night_benchmark_runs_both_nightly_jobs_and_compares_them(tmp_path):
    from model.sample import generate

    frame = generate(400, seed=3)
    frame.iloc[:300].to_parquet(tmp_path / "train.parquet")
    frame.iloc[300:].to_parquet(tmp_path / "test.parquet")
    out = tmp_path / "e5_night.json"
    subprocess.run([sys.executable, "-m", "benchmarks.e5_night", "--dataset", str(tmp_path), "--rows", "150",
                    "--rounds", "1", "--out", str(out)], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"linear", "e5-linear"}
    assert all(len(runs) == 1 and runs[0]["rows_per_s"] > 0 for runs in report["runs"].values())
    assert set(report["training_seconds"]) == {"linear", "e5-linear"}


def test_bilstm_init_benchmark_pairs_both_starts_on_the_same_folds(tmp_path):
    from model.sample import generate

    (tmp_path / "sikayetvar_belediye_tr").mkdir()
    frame = generate(400, seed=4)
    frame.iloc[:300].to_parquet(tmp_path / "sikayetvar_belediye_tr" / "train.parquet")
    frame.iloc[300:].to_parquet(tmp_path / "sikayetvar_belediye_tr" / "test.parquet")
    out = tmp_path / "bilstm_init.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bilstm_init", "--shared", str(tmp_path), "--datasets",
                    "sikayetvar_belediye_tr", "--small", "--epochs", "1", "--out", str(out)], check=True,
                   capture_output=True, timeout=600)
    data = json.loads(out.read_text())["datasets"]["sikayetvar_belediye_tr"]
    assert data["rows"] == 400 and data["words"] > 100
    assert set(data["variants"]) == {"bilstm", "bilstm+e5 init"}
    assert all(v["folds"] == 5 and 0 <= v["accuracy"] <= 1 for v in data["variants"].values())
    assert data["variants"]["bilstm"]["accuracy_vs_bilstm"] == 0  # the paired anchor is the plain BiLSTM


def test_a_childs_peak_memory_is_its_own_not_the_benchmarks():
    """Linux carries a parent's peak into a child's `ru_maxrss` across fork and exec; the benchmarks' measure
    (`benchmarks.labelling.peak_while_running`) must give the child's own: here a small child of a parent that
    holds 400 MB, then a child that holds 200 MB itself."""
    from benchmarks.labelling import peak_while_running

    held = bytearray(400 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touched, so it is resident
    small = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    assert peak_while_running(small) < 100 * 2**20
    large = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 * 2**20); b[::4096] = "
                              "b'\\1' * len(b[::4096]); time.sleep(1)"])
    assert 200 * 2**20 <= peak_while_running(large) < 300 * 2**20
    assert len(held) == 400 * 2**20
