"""Which precision a worker process serves a model at: the flag, the model's agreement record, and this CPU.

`--precision bf16|openvino-bf16|openvino-f32` is served as asked, unless the model's
record (`model.precision.refusal`) forbids it: then it is refused in one line, or
served anyway with `--force-precision`. `--precision fp32` is FP32 on the fastest
runtime that computes it: TensorFlow, or OpenVINO's f32 where the model's record
shows it computes the same (`precision.computes_the_same`). `--precision auto` adds
a lower precision where the record allows one and this CPU computes bfloat16 in
hardware. With more than one candidate, a few batches of each are timed,
interleaved, once per model and process, and the fastest kept; a lower precision
must beat the fastest FP32 by `MIN_GAIN`. Where both bf16s are allowed it considers
OpenVINO's alone, the runtime built for it (TensorFlow's bf16 is for installations
without OpenVINO, or models whose record allows only it). So `auto` is never a lower
precision the record forbids, and on a CPU without AMX or AVX-512 BF16 it is FP32.
`choose` builds the model at what it picks and returns it, with how it chose.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model import artifact, precision, pretrained
from model.errors import UserError
from model.serving import ServingModel
from worker import precision_cache

if TYPE_CHECKING:
    from worker.config import WorkerConfig

log = logging.getLogger("complaints.worker")

PROBE_ROUNDS = 5  # interleaved timings per candidate; the median counts
KEEP_WITHIN = 0.8  # a candidate slower than this share of the best is not timed again
MIN_GAIN = 1.1  # auto serves a lower precision only if it measured at least this much faster than FP32
SAME_ARITHMETIC = (precision.FP32, precision.OPENVINO_F32)  # FP32's runtimes: none has to buy its place


@dataclass(frozen=True)
class PrecisionSetting:
    """What the command asked for, and the review threshold the rule is checked against."""

    setting: str = precision.AUTO
    force: bool = False
    review_threshold: float = 0.5

    @classmethod
    def of(cls, config: WorkerConfig) -> PrecisionSetting:
        return cls(config.precision, config.force_precision, config.review_threshold)


def choose(loaded: artifact.Artifact, model_dir: str, asked: PrecisionSetting, xla: bool,
           sizes: tuple[int, ...]) -> ServingModel:
    """`loaded` served at the precision chosen for it, with how it was chosen (`ServingModel.choice`, a JSON-ready
    value that travels with every batch it labels). With several candidates each is compiled and timed here, once,
    and the fastest kept, unless this machine already measured the same candidates for this model
    (`worker.precision_cache`): then only that one is built."""
    considered, why = candidates(asked, loaded.metadata, model_dir, loaded.model)
    rows, rates = sizes[-1], None
    entry_key = precision_cache.key(loaded.version, considered, rows, xla) if len(considered) > 1 else None
    kept = precision_cache.lookup(entry_key) if entry_key else None
    built, left_out = {}, {}
    if kept and kept["served"] in considered:
        served = kept["served"]
        built, left_out = _build(loaded, [served], considered, xla, sizes,
                                 None if served == precision.FP32 else probe_texts(1))
        if built:
            rates = kept["rows_per_second"]
            why = (f"{why}; as timed on this machine at "
                   f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(kept['measured_at']))} "
                   f"({precision_cache.path()})")
    if not built:
        texts = probe_texts(rows) if len(considered) > 1 else None  # each candidate's first call, untimed
        built, failed = _build(loaded, [p for p in considered if p not in left_out], considered, xla, sizes, texts)
        left_out.update(failed)
        if len(built) > 1:
            served, measured = fastest({p: (lambda m=m: m(texts)) for p, m in built.items()}, rows,
                                       prefer=SAME_ARITHMETIC, warmed=True)
            rates = {p: round(r, 1) for p, r in measured.items()}  # as logged, kept and summarised
            built[served].warmed.add(rows)
            precision_cache.store(entry_key, served, rates)
        else:
            [served] = built
    if left_out:
        why += f"; left out, as it failed here: {'; '.join(f'{k}: {v}' for k, v in left_out.items())}"
    serving = built[served]
    serving.choice = {"setting": asked.setting, "served": served, "why": why_served(why, served, rates),
                      "rows_per_second": rates or None, "measured_now": len(built) > 1}
    return serving


def _build(loaded: artifact.Artifact, wanted: list[str], considered: list[str], xla: bool, sizes: tuple[int, ...],
           probe: Sequence[str] | None) -> tuple[dict, dict]:
    """({precision: ServingModel} for each of `wanted` that builds and serves `probe`, {precision: why} for
    those that did not).

    A candidate the job could do without (an OpenVINO runtime beside TensorFlow's FP32) that fails to
    compile or to serve its first batch is left out with a warning, and the rest are served: a runtime's
    fault on one CPU must not fail a night that TensorFlow can label. What was asked for alone, and
    TensorFlow's FP32, still fail.
    """
    built, failed = {}, {}
    for candidate in wanted:
        try:
            serving = ServingModel(loaded, xla, sizes, candidate)
            if probe is not None:
                serving(probe)
            built[candidate] = serving
        except Exception as exc:
            if len(considered) == 1 or candidate == precision.FP32:
                raise
            failed[candidate] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            log.warning("model %s: could not build %s (%s); choosing among the rest", loaded.version, candidate,
                        failed[candidate])
    return built, failed


def candidates(asked: PrecisionSetting, metadata: dict, model_dir: str, model=None) -> tuple[list[str], str]:
    """(the precisions to consider, TensorFlow's FP32 first where there are several; why these). `model`, the
    loaded Keras model, lets it also leave out what this installation cannot serve (OpenVINO's precisions for
    a model it cannot take): jobs call it once before the pipeline, without the model, so a refused precision
    fails before anything is read."""
    if asked.setting not in precision.SETTINGS:
        raise UserError(f"unknown precision {asked.setting!r}: use one of {', '.join(precision.SETTINGS)}")
    if asked.setting == precision.FP32:
        same = _same_fp32(metadata, model)
        return [precision.FP32, *same], ("fp32 on the faster runtime, timed at load (OpenVINO's f32 computes the "
                                         "same)" if same else "asked for")
    if asked.setting != precision.AUTO:
        why = precision.refusal(metadata, asked.setting, asked.review_threshold)
        missing = precision.unavailable(model, asked.setting)
        if missing:
            raise UserError(f"model {model_dir} cannot be served at --precision {asked.setting} here: {missing}")
        if why is None:
            return [asked.setting], "asked for"
        if asked.force:
            log.warning("serving %s at %s although %s (--force-precision)", model_dir, asked.setting, why)
            return [asked.setting], f"asked for, forced although {why}"
        raise UserError(f"model {model_dir} may not be served at --precision {asked.setting}: {why}; use "
                        "--precision auto or fp32, or --force-precision to serve it anyway")
    if pretrained.recorded(model_dir, metadata):
        return [precision.FP32], ("auto: fp32, untimed: the e5 encoder, nearly all of this model's time, computes "
                                  "in its own 4-bit engine, which no precision here changes")
    lower = [p for p in precision.PRECISIONS if p not in SAME_ARITHMETIC]
    reasons = {p: precision.refusal(metadata, p, asked.review_threshold) or precision.unavailable(model, p)
               for p in lower}
    allowed = [p for p in lower if reasons[p] is None]
    if precision.OPENVINO_BF16 in allowed and precision.BF16 in allowed:  # one bf16: the runtime built for it
        allowed.remove(precision.BF16)
    same = _same_fp32(metadata, model)
    fp32 = f"; {precision.OPENVINO_F32} computes the same as FP32" if same else ""
    if not allowed:
        return [precision.FP32, *same], ("auto: no lower precision allowed for this model ("
                                         f"{'; '.join(f'{p}: {why}' for p, why in reasons.items())}){fp32}")
    if not precision.native_bf16():
        return [precision.FP32, *same], ("auto: this CPU has no bf16 instructions (AMX, AVX-512 BF16), so bf16 "
                                         f"would be emulated and slower{fp32}")
    return [precision.FP32, *same, *allowed], "auto: the fastest allowed, timed at load"


def _same_fp32(metadata: dict, model) -> list[str]:
    """The runtimes besides TensorFlow that `fp32` and `auto` may serve FP32 on: OpenVINO's f32 where the
    model's record shows it computes the same, it can serve this model here, and it is not switched off."""
    if not precision.openvino_f32_considered() or precision.computes_the_same(metadata, precision.OPENVINO_F32):
        return []
    if precision.unavailable(model, precision.OPENVINO_F32):
        return []
    return [precision.OPENVINO_F32]


def fastest(calls: dict[str, Callable[[], None]], rows: int, rounds: int = PROBE_ROUNDS,
            keep_within: float = KEEP_WITHIN, prefer: Collection[str] = (), warmed: bool = False) -> tuple[str, dict]:
    """The candidate whose call ran fastest (median of interleaved rounds, after one untimed call each, unless
    the caller made it: `warmed`),
    and each one's rows per second. Interleaving keeps a noisy neighbour from favouring one candidate.
    The fastest of `prefer` (FP32's runtimes, for auto) is kept unless another ran at least `MIN_GAIN` times
    as fast: a lower precision moves a few uncertain verdicts, so it has to buy more speed than these
    machines' noise. Among `prefer` the faster wins by any margin, since they compute the same.

    Every timed call is load time the job pays, so a candidate slower than `keep_within`
    of the best after a round is not timed again (its rate is that of the rounds it ran):
    where OpenVINO's bf16 runs twice as fast, FP32 and TensorFlow's bf16 are timed once.
    """
    for call in () if warmed else calls.values():
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    timed = list(calls)
    for _ in range(rounds):
        for name in timed:
            started = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - started)
        best = min(statistics.median(seconds[name]) for name in timed)
        timed = [name for name in timed if best / statistics.median(seconds[name]) >= keep_within]
        if len(timed) == 1:  # the rest are clearly slower: more rounds would only cost load time
            break
    rates = {name: rows / statistics.median(times) for name, times in seconds.items()}
    best = max(rates, key=rates.get)
    preferred = [name for name in rates if name in prefer]
    if preferred:
        kept = max(preferred, key=rates.get)
        if rates[best] < MIN_GAIN * rates[kept]:
            best = kept
    return best, rates


def why_served(why: str, served: str, rates: dict[str, float] | None) -> str:
    """`why`, and where auto kept FP32 although a lower precision measured faster, by how little: without
    it the log line would say "the fastest allowed" beside a rate lower than another's."""
    others = {at: rate for at, rate in (rates or {}).items() if at not in SAME_ARITHMETIC}
    if served not in SAME_ARITHMETIC or not others or served not in rates:
        return why
    best = max(others, key=others.get)
    gain = others[best] / rates[served]
    if gain <= 1:
        return why
    kept = "FP32" if served == precision.FP32 else f"FP32 ({served})"
    return (f"{why}; {kept} kept: {best} measured {gain:.2f}x {kept}, under the {MIN_GAIN}x a lower precision "
            "must buy")


def described(choice: dict) -> str:
    """One line for the log and the nightly summary: what was served (or asked, where each worker chose) and why."""
    rates = choice.get("rows_per_second")
    measured = f"; measured {', '.join(f'{k} {v:,.0f} rows/s' for k, v in rates.items())}" if rates else ""
    return f"precision {choice['served'] or choice.get('setting')} ({choice.get('why', 'given')}{measured})"


def probe_texts(rows: int) -> Sequence[str]:
    """Texts long enough to fill the sequence (the numeric core's cost does not depend on the words)."""
    return ["şikayet ürün kargo fatura iade destek " * 8] * rows
