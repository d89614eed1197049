"""`models:/…` on the command line: resolved once, here on the launcher, before a command runs.

Every command that takes `--model` gets a plain, checked model directory
(`model.registry.resolve`), so nothing below the command line knows about the
registry. A command receives `--registry-uri` itself only if it asks for it (the
live job does: its workers follow `--watch-models models:/NAME@ALIAS`).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

from model import registration, registry
from model.errors import UserError

MODEL_PARAMS = ("model_dir", "models", "shadow")  # --model, once or several times; --shadow


def resolve_params(params: dict, callback: Callable) -> None:
    """Replace each `models:/` value of `params` by its local copy, say so on stderr, and check a registry
    watch's path; then drop `registry_uri` unless `callback` names it."""
    uri = params.get("registry_uri")
    for name in MODEL_PARAMS:
        value = params.get(name)
        if isinstance(value, str) and registry.is_registered(value):
            params[name] = _resolved(value, uri)
        elif isinstance(value, tuple):
            params[name] = tuple(_resolved(v, uri) if registry.is_registered(v) else v for v in value)
    watched = params.get("watch_models")
    if registry.is_registered(watched):
        reference = registry.Reference.parse(watched)
        if not reference.alias:
            raise UserError(f"--watch-models {watched}: a version never moves; watch an alias "
                            f"(models:/{reference.name}@champion)")
        params["registry_uri"] = registry.registry_uri(uri)
    if "registry_uri" in params and "registry_uri" not in inspect.signature(callback).parameters:
        params.pop("registry_uri")


def _resolved(path: str, uri: str | None) -> str:
    resolved = registry.resolve(path, uri)
    print(f"{path} is {registry.described(resolved.lineage)} (model {resolved.lineage['model_version']}), "
          f"served from {resolved.model_dir}", file=sys.stderr, flush=True)
    return resolved.model_dir


def register_trained(model_dir: str, name: str, alias: str | None, uri: str, training: dict) -> str:
    """Log the run that trained `model_dir` and register it; the line the command prints."""
    import glob
    import os

    from model import artifact

    _, metadata = artifact.read_metadata(model_dir)
    metrics = {f"test_{k}": v for k, v in metadata.get("test_metrics", {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    calibration = metadata.get("calibration") or {}
    metrics.update({k: calibration[k] for k in ("test_ece_before", "test_ece_after")
                    if isinstance(calibration.get(k), int | float)})
    training = {k: v for k, v in {**(metadata.get("architecture") or {}), **training}.items() if v is not None}
    reports = sorted(glob.glob(os.path.join(model_dir, "report", "*")))
    from worker import pyfunc

    done = registration.register(model_dir, name, alias, uri, params=training, metrics=metrics, reports=reports,
                             packaged=pyfunc.save)
    moved = ""
    if alias:
        moved = f"; @{alias} now points at it" + (f" (it was version {done['previous']})" if done["previous"] else "")
    return (f"registered {model_dir} as {registry.SCHEME}{name}/{done['version']} in {done['registry']} "
            f"(run {done['run_id']}, model {done['model_version']}){moved}")
