"""Serving precisions, and the agreement record that decides which a model may be served at.

A lower precision is a different classifier: most rows keep their label, a few near
a tie flip. Whether that is acceptable is a fact about the model and its data, so it
is measured once, at export (`complaints train`, or `complaints precision` for a
model directory someone else wrote), on held-out rows, and recorded in
metadata.json under `precisions`. The rule (`refusal`) is then applied where the
model is served, with the job's own review threshold:

- overall argmax agreement with FP32 of at least `MIN_AGREEMENT`, and
- no row that FP32 labels at or above the review threshold changes its label
  (confident verdicts never move; the uncertain ones are routed to review anyway).

Two lower precisions, each its own classifier with its own record, and one more runtime
for FP32:

- `bf16`: Keras mixed precision (`mixed_bfloat16`): the numeric layers compute in
  bfloat16 from float32 weights, the softmax stays float32. TensorFlow hands the
  bfloat16 matrix products to oneDNN, which uses AMX or AVX-512 BF16 where the CPU
  has them; elsewhere they are emulated and slower than FP32 (`native_bf16`).
- `openvino-bf16`: the numeric core rebuilt as an OpenVINO model
  (`model.openvino_core`) compiled with `INFERENCE_PRECISION_HINT=bf16`, behind the
  same TensorFlow vectoriser.
- `openvino-f32`: the same OpenVINO graph compiled at f32. It is not a lower precision
  but another runtime for the same arithmetic; its record shows whether it computes
  the same as TensorFlow (`computes_the_same`: no label changed, no probability
  moved by more than `SAME_WITHIN`). Where it does, `fp32` and `auto` may serve it
  (`worker.precision_choice`).
"""

from __future__ import annotations

import os
import platform

import keras
import numpy as np

from model import openvino_core

FP32, BF16, OPENVINO_BF16, OPENVINO_F32 = "fp32", "bf16", "openvino-bf16", "openvino-f32"
PRECISIONS = (FP32, BF16, OPENVINO_BF16, OPENVINO_F32)
OPENVINO = {OPENVINO_BF16: BF16, OPENVINO_F32: FP32}  # the precisions OpenVINO serves, and the arithmetic of each
SAME_WITHIN = 1e-5  # float32 round-off: TensorFlow's own XLA and graph paths differ by about 3e-7 on a BiLSTM
AUTO = "auto"
SETTINGS = (AUTO, *PRECISIONS)
MIN_AGREEMENT = 0.99
RECORD_KEY = "precisions"  # in metadata.json: {precision: agreement record}

# The layers that compute in the lower precision; the vectoriser, the temperature and the softmax stay float32.
_LOWERED = (keras.layers.Embedding, keras.layers.Bidirectional, keras.layers.LSTM, keras.layers.LSTMCell,
            keras.layers.Dense, keras.layers.Dropout, keras.layers.GlobalMaxPooling1D)
_HARDWARE_FLAGS = ("amx_bf16", "avx512_bf16")
ISA_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f")


def converted(model: keras.Model, precision: str) -> keras.Model:
    """`model` computing at `precision`: the model itself for fp32, else a copy (same weights) whose numeric
    layers run under `mixed_bfloat16`. The copy shares the text vectoriser, which holds no weights to copy."""
    if precision == FP32 or precision in OPENVINO:  # OpenVINO takes the FP32 weights (`numeric_core`)
        return model
    if precision != BF16:
        raise ValueError(f"unknown precision {precision!r}")

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.TextVectorization):
            return layer
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    for layer in _walk(copy):
        if isinstance(layer, _LOWERED):
            layer.dtype_policy = keras.dtype_policies.DTypePolicy("mixed_bfloat16")
    return copy


def _walk(layer: keras.layers.Layer):
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from _walk(sub)
    for name in ("forward_layer", "backward_layer", "cell"):  # inside Bidirectional and the RNN layers
        inner = getattr(layer, name, None)
        if isinstance(inner, keras.layers.Layer):
            yield from _walk(inner)


def unavailable(model: keras.Model | None, precision: str) -> str | None:
    """Why `model` cannot be served at `precision` in this installation (None: it can). Without a model (before
    one is loaded), only whether the runtime is installed."""
    if precision not in OPENVINO:
        return None
    if not openvino_core.available():
        return "the OpenVINO runtime is not installed (pip install -c requirements.lock openvino)"
    if model is None:
        return None
    parts = openvino_core.layers(model)
    return None if isinstance(parts, openvino_core.Layers) else f"OpenVINO cannot take this model: {parts}"


def numeric_core(model: keras.Model, precision: str) -> tuple[keras.layers.TextVectorization,
                                                                 openvino_core.OpenVinoCore]:
    """(the TensorFlow vectoriser, the compiled OpenVINO core) of `model` at an OpenVINO precision."""
    why = unavailable(model, precision)
    if why:
        raise ValueError(why)
    parts = openvino_core.layers(model)
    return parts.vectorizer, openvino_core.OpenVinoCore(parts, OPENVINO[precision])


def agreement(fp32: np.ndarray, other: np.ndarray, review_threshold: float) -> dict:
    """How far `other`'s verdicts are from FP32's on the same rows: what the rule and a reader need."""
    labels, others = fp32.argmax(axis=1), other.argmax(axis=1)
    changed = labels != others
    ranked = np.sort(fp32, axis=1)
    confidence = ranked[:, -1]
    margin = ranked[:, -1] - ranked[:, -2] if fp32.shape[1] > 1 else confidence
    flagged, flagged_other = confidence < review_threshold, other.max(axis=1) < review_threshold
    return {
        "rows": len(fp32),
        "agreement": float(1 - changed.mean()) if len(fp32) else None,
        "changed_rows": int(changed.sum()),
        "max_probability_change": float(np.abs(fp32 - other).max()) if len(fp32) else None,
        "max_changed_margin": float(margin[changed].max()) if changed.any() else None,
        "max_changed_confidence": float(confidence[changed].max()) if changed.any() else None,
        "review_threshold": review_threshold,
        "confident_changes": int((changed & ~flagged).sum()),
        "review_flag_changes": int((flagged != flagged_other).sum()),
    }


def unmeasured(model: keras.Model, precision: str) -> str | None:
    """Why `measure` leaves `precision` out here (None: it measures it)."""
    why = unavailable(model, precision)
    if why is None and precision in OPENVINO:
        computes_in = numeric_core(model, precision)[1].hint  # what the CPU plugin chose, not what was hinted
        if computes_in != openvino_core.HINTS[OPENVINO[precision]]:
            why = (f"OpenVINO computes it in {computes_in} on this CPU (no bf16 instructions): measure where it is "
                   "served")
    return why


def refusal(metadata: dict, precision: str, review_threshold: float) -> str | None:
    """Why this model may not be served at `precision` under this review threshold (None: it may)."""
    if precision == FP32:
        return None
    record = (metadata.get(RECORD_KEY) or {}).get(precision)
    if not isinstance(record, dict) or not record.get("rows"):
        return (f"its metadata.json has no {precision} agreement record (models trained before this version, or "
                "written elsewhere): measure one with `complaints precision --model DIR --data LABELLED_FILE`")
    if record["agreement"] < MIN_AGREEMENT:
        return (f"at {precision} it agreed with FP32 on {record['agreement']:.2%} of {record['rows']:,} held-out rows "
                f"(the rule asks for {MIN_AGREEMENT:.0%})")
    confident = record.get("max_changed_confidence")
    if confident is not None and confident >= review_threshold:
        return (f"at {precision} a row FP32 labels with confidence {confident:.3f} changed its label, at or above the "
                f"review threshold {review_threshold} (confident verdicts must not move)")
    return None


def computes_the_same(metadata: dict, precision: str) -> str | None:
    """Why `precision` is not shown to compute what TensorFlow's FP32 computes (None: its record shows it does,
    on held-out rows: no label changed and no probability moved by more than `SAME_WITHIN`)."""
    if OPENVINO.get(precision) != FP32:
        return f"{precision} computes in another precision"
    record = (metadata.get(RECORD_KEY) or {}).get(precision)
    if not isinstance(record, dict) or not record.get("rows"):
        return (f"its metadata.json has no {precision} agreement record: measure one with `complaints precision "
                "--model DIR --data LABELLED_FILE`")
    moved = record.get("max_probability_change")
    if record.get("changed_rows") or not isinstance(moved, int | float) or moved > SAME_WITHIN:
        return (f"on {record['rows']:,} held-out rows it changed {record.get('changed_rows')} labels and moved a "
                f"probability by {moved} (the same means no label and at most {SAME_WITHIN:g})")
    return None


def openvino_f32_considered() -> bool:
    """Whether `fp32` and `auto` may serve FP32 through OpenVINO where it computes the same.

    `COMPLAINTS_OPENVINO_F32=no` keeps them on TensorFlow: one runtime for every
    process of a job, bit for bit (the tests set it, so the suite's verdicts never
    depend on which runtime a load-time timing picked); `--precision openvino-f32`
    still serves it.
    """
    return os.environ.get("COMPLAINTS_OPENVINO_F32", "").strip().lower() != "no"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), empty where /proc/cpuinfo cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    """The CPU's model name (Linux), else what the platform says: for logs, benchmarks and auto's kept timings."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.partition(":")[2].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def isa_features() -> list[str]:
    """The instruction-set features that decide a precision's speed, as found here (for logs and benchmarks)."""
    flags = cpu_flags()
    return [flag for flag in ISA_FLAGS if flag in flags]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (AMX or AVX-512 BF16).

    Without them TensorFlow emulates bfloat16 and FP32 is faster, so `auto` does not
    spend load time measuring it. `COMPLAINTS_BF16_HARDWARE=yes|no` overrides the
    detection (a CPU whose flags are hidden by a hypervisor; tests of the measurement).
    """
    forced = os.environ.get("COMPLAINTS_BF16_HARDWARE", "").strip().lower()
    if forced in ("yes", "no"):
        return forced == "yes"
    return bool(cpu_flags() & set(_HARDWARE_FLAGS))
