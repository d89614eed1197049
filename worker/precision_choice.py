"""Which precision a worker process serves a model at: the flag, the model's agreement record, and this CPU.

`--precision fp32|bf16|openvino-bf16` is served as asked, unless the model's record
(`model.precision.refusal`) forbids it: then it is refused in one line, or served
anyway with `--force-precision`. `--precision auto` serves FP32 unless the record
allows a lower precision and this CPU computes it in hardware; then it times a few
batches of FP32 and of that precision, interleaved, once per model and process, and
keeps the faster. Where both bf16s are allowed it considers OpenVINO's alone, the
runtime built for it (TensorFlow's bf16 is for installations without OpenVINO, or
models whose record allows only it). So `auto` is never a lower precision the record
forbids, and on a CPU without AMX or AVX-512 BF16 it is FP32 with no time spent measuring.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model import precision
from model.errors import UserError

if TYPE_CHECKING:
    from worker.config import WorkerConfig

log = logging.getLogger("complaints.worker")

PROBE_ROUNDS = 5  # interleaved timings per candidate; the median counts
KEEP_WITHIN = 0.8  # a candidate slower than this share of the best is not timed again
MIN_GAIN = 1.1  # auto serves a lower precision only if it measured at least this much faster than FP32


@dataclass(frozen=True)
class PrecisionSetting:
    """What the command asked for, and the review threshold the rule is checked against."""

    setting: str = precision.AUTO
    force: bool = False
    review_threshold: float = 0.5

    @classmethod
    def of(cls, config: WorkerConfig) -> PrecisionSetting:
        return cls(config.precision, config.force_precision, config.review_threshold)


def candidates(asked: PrecisionSetting, metadata: dict, model_dir: str, model=None) -> tuple[list[str], str]:
    """(the precisions to consider, FP32 first; why these). `model`, the loaded Keras model, lets it also leave
    out what this installation cannot serve (the OpenVINO precisions without OpenVINO): jobs call it once
    before the pipeline, without the model, so a refused precision fails before anything is read."""
    if asked.setting not in precision.SETTINGS:
        raise UserError(f"unknown precision {asked.setting!r}: use one of {', '.join(precision.SETTINGS)}")
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
    lower = [p for p in precision.PRECISIONS if p != precision.FP32]
    reasons = {p: precision.refusal(metadata, p, asked.review_threshold) or precision.unavailable(model, p)
               for p in lower}
    allowed = [p for p in lower if reasons[p] is None]
    if precision.OPENVINO_BF16 in allowed and precision.BF16 in allowed:  # one bf16: the runtime built for it
        allowed.remove(precision.BF16)
    if not allowed:
        return [precision.FP32], ("auto: no lower precision allowed for this model ("
                                  f"{'; '.join(f'{p}: {why}' for p, why in reasons.items())})")
    if not precision.native_bf16():
        return [precision.FP32], ("auto: this CPU has no bf16 instructions (AMX, AVX-512 BF16), so bf16 would be "
                                  "emulated and slower")
    return [precision.FP32, *allowed], "auto: the fastest allowed, timed at load"


def fastest(calls: dict[str, Callable[[], None]], rows: int, rounds: int = PROBE_ROUNDS,
            keep_within: float = KEEP_WITHIN, prefer: str | None = None) -> tuple[str, dict]:
    """The candidate whose call ran fastest (median of interleaved rounds, after one untimed call each),
    and each one's rows per second. Interleaving keeps a noisy neighbour from favouring one candidate.
    `prefer` (FP32, for auto) is kept unless another ran at least `MIN_GAIN` times as fast: a lower precision
    moves a few uncertain verdicts, so it has to buy more speed than these machines' noise.

    Every timed call is load time the job pays, so a candidate slower than `keep_within`
    of the best after a round is not timed again (its rate is that of the rounds it ran):
    where OpenVINO's bf16 runs twice as fast, FP32 and TensorFlow's bf16 are timed once.
    """
    for call in calls.values():
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
    if prefer in rates and rates[best] < MIN_GAIN * rates[prefer]:
        best = prefer
    return best, rates


def why_served(why: str, served: str, rates: dict[str, float] | None) -> str:
    """`why`, and where auto kept FP32 although another precision measured faster, by how little: without
    it the log line would say "the fastest allowed" beside a rate lower than another's."""
    others = {at: rate for at, rate in (rates or {}).items() if at != precision.FP32}
    if served != precision.FP32 or not others or precision.FP32 not in rates:
        return why
    best = max(others, key=others.get)
    gain = others[best] / rates[precision.FP32]
    if gain <= 1:
        return why
    return f"{why}; FP32 kept: {best} measured {gain:.2f}x FP32, under the {MIN_GAIN}x a lower precision must buy"


def described(choice: dict) -> str:
    """One line for the log and the nightly summary: what was served (or asked, where each worker chose) and why."""
    rates = choice.get("rows_per_second")
    measured = f"; measured {', '.join(f'{k} {v:,.0f} rows/s' for k, v in rates.items())}" if rates else ""
    return f"precision {choice['served'] or choice.get('setting')} ({choice.get('why', 'given')}{measured})"


def probe_texts(rows: int) -> Sequence[str]:
    """Texts long enough to fill the sequence (the numeric core's cost does not depend on the words)."""
    return ["şikayet ürün kargo fatura iade destek " * 8] * rows
