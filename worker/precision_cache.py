"""What `--precision auto` measured on this machine, kept so the next run need not build and time the losers.

Timing the candidates costs a job load time: FP32 must be compiled by XLA and run
before it can lose, a few seconds against the 20-40 s a 100,000-row night takes. The
outcome is a fact about the model, this CPU and the installed runtimes, so it is kept
in a small JSON file and reused while all of these are unchanged, for `MAX_AGE_DAYS`:

    key     model version, the candidates, the batch size timed, the CPU (model name and
            feature flags), TensorFlow's, Keras' and OpenVINO's versions, XLA on or off
    value   what was served, each candidate's rows per second, when it was measured

The file is `COMPLAINTS_PRECISION_CACHE` (a path, or `off`), else
`$XDG_CACHE_HOME/complaints/precision-choices.json` (`~/.cache/...`). It is written by
rename, so concurrent jobs never read half a file; one that cannot be read, parsed or
written is ignored, as is any entry it could not have written (a hand edit: a time that
is not a number or lies in the future, a rate that is not positive), and auto measures
as it would without it. A fresh Dataflow or Dask worker has none: it measures once, for
its life.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import tempfile
import time

from model import precision

log = logging.getLogger("complaints.worker")

MAX_AGE_DAYS = 7
ENV = "COMPLAINTS_PRECISION_CACHE"


def path() -> str | None:
    """The cache file, or None where it is switched off."""
    configured = os.environ.get(ENV, "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "complaints", "precision-choices.json")


def key(model_version: str, candidates: list[str], rows: int, xla: bool) -> str:
    """Everything the outcome depends on, hashed: a change to any of them measures again."""
    return hashlib.sha256(json.dumps({
        "model": model_version, "candidates": candidates, "rows": rows, "xla": xla, "cpu": _cpu(),
        "versions": {name: _version(name) for name in ("tensorflow", "keras", "openvino")},
    }, sort_keys=True).encode()).hexdigest()[:32]


def lookup(entry_key: str) -> dict | None:
    """The kept measurement for this key, if there is a recent one: {served, rows_per_second, measured_at}."""
    entry = _read().get(entry_key)
    return entry if _usable(entry, time.time()) else None


def _usable(entry: object, now: float) -> bool:
    """Whether an entry is one `store` could have written, measured within `MAX_AGE_DAYS` before `now`: the
    file is anyone's to edit, and a NaN, future or non-numeric time, a rate that is not a positive number, or
    no rate for the precision served, must mean "measure again", never a crash or a choice kept for ever."""
    if not isinstance(entry, dict) or not isinstance(entry.get("served"), str):
        return False
    measured, rates = entry.get("measured_at"), entry.get("rows_per_second")
    if not _number(measured) or not 0 <= now - measured <= MAX_AGE_DAYS * 86_400:
        return False
    return (isinstance(rates, dict) and entry["served"] in rates  # store keeps the winner's rate among them
            and all(isinstance(at, str) and _number(r) and r > 0 for at, r in rates.items()))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def store(entry_key: str, served: str, rates: dict[str, float]) -> None:
    """Keep this measurement (and drop expired ones); a file that cannot be written is left as it is."""
    target = path()
    if target is None:
        return
    now = time.time()
    entries = {k: v for k, v in _read().items() if _usable(v, now)}
    entries[entry_key] = {"served": served, "rows_per_second": rates, "measured_at": now}
    try:
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".precision-", dir=os.path.dirname(target) or ".")
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        os.replace(temporary, target)
    except OSError as exc:
        log.warning("could not keep auto's precision measurement in %s (%s); it is measured again next time",
                    target, exc)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(temporary)


def _read() -> dict:
    target = path()
    if target is None:
        return {}
    try:
        with open(target, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _cpu() -> dict:
    return {"model": precision.cpu_model(), "flags": sorted(precision.cpu_flags()),
            "cores": os.cpu_count(), "bf16_hardware": precision.native_bf16()}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
