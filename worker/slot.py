"""The model slot: what one worker process serves, swapped in place when a newer model is accepted.

It builds each `ServingModel` once per process (RunInference's shared handle alone
would drop it) at the precision `worker.precision_choice.choose` picks, which keeps how
it chose on the model (`ServingModel.choice`): each batch it labels carries that choice
to the run's figures (`worker.transform.SERVED`), so the nightly summary says what was
served on any runner.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import apache_beam as beam
import tensorflow as tf

from model import artifact, compiled, files, registry
from model.errors import UserError
from model.serving import ServingModel
from worker import telemetry
from worker.defaults import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MIN_BATCH_SIZE, METRICS_NAMESPACE
from worker.precision_choice import PrecisionSetting, choose, described

log = logging.getLogger("complaints.worker")

_KEPT: dict[tuple, ServingModel] = {}  # see ModelSlot._serving: Beam's Shared alone would drop it
_LOADS: collections.Counter[str] = collections.Counter()  # ServingModels this process built, by directory


def loads() -> dict[str, int]:
    """How many times this process loaded each model directory: once a worker process, unless it was swapped
    (tests/test_dask.py asks every Dask worker)."""
    return dict(_LOADS)


_KEPT_LOCK = threading.Lock()


class ModelSlot:
    """The model one worker process serves, replaced in place when a newer model is accepted.

    RunInference holds on to what `load_model` returned for the life of the process;
    holding a slot rather than the model lets a swap take effect on the next batch,
    on any runner, with no reload of the pipeline. A candidate that does not load, or
    whose labels differ from the serving model's (a label or a `label_id` would change
    meaning without anyone noticing), is refused: the current model keeps serving.
    """

    def __init__(self, model_dir: str, serving: ServingModel | None = None, xla: bool = True,
                 sizes: tuple[int, ...] | None = None, warm_up: bool = False,
                 asked: PrecisionSetting | None = None):
        self.xla, self.warm_up, self.asked = xla, warm_up, asked or PrecisionSetting()
        self.sizes = sizes or compiled.buckets(DEFAULT_MIN_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE)
        self.current = serving or self._serving(model_dir)
        self.model_dir = model_dir
        self._seen: dict[str, tuple | None] | None = None  # watched directories considered, by their files' state
        self._next_check = 0.0
        self._refused: set[tuple[str, str]] = set()  # registered versions an alias pointed at and we refused
        self._lock = threading.Lock()
        self._counted: collections.Counter[str] = collections.Counter()  # for Beam, from the batch's thread
        self._counted_lock = threading.Lock()
        _announce(self.current, model_dir)

    def _count(self, name: str) -> None:
        with self._counted_lock:
            self._counted[name] += 1

    def report_counts(self) -> None:
        """Hand what the watch counted (swaps, refusals, registry outages) to Beam's metrics. Beam records a
        counter in the thread's own metrics container, which a watch thread does not have, so the batch that
        runs next reports them."""
        with self._counted_lock:
            counted, self._counted = self._counted, collections.Counter()
        for name, n in counted.items():
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(n)

    def offer(self, model_dir: str) -> bool:
        """Serve `model_dir` from the next batch on, unless it is unfit; True if it was taken."""
        if model_dir.rstrip("/") == self.model_dir.rstrip("/"):
            return False
        try:
            candidate = self._serving(model_dir)
        except UserError as exc:
            return self._refuse(model_dir, str(exc))
        except Exception as exc:  # noqa: BLE001 (whatever a candidate does, the serving model stays)
            return self._refuse(model_dir, f"it does not load ({type(exc).__name__}: {str(exc)[:200]})")
        if list(candidate.labels) != list(self.current.labels):
            added = sorted(set(candidate.labels) - set(self.current.labels))
            removed = sorted(set(self.current.labels) - set(candidate.labels))
            why = f"its labels differ (added {added}, removed {removed})" if added or removed \
                else "its labels are in another order (label_id would change meaning)"
            return self._refuse(model_dir, why)
        self.current, self.model_dir = candidate, model_dir
        self._count("model_swaps")
        telemetry.MODEL_SWAPS.inc()
        _announce(candidate, model_dir)
        return True

    def watch(self, pattern: str, interval_secs: float, registry_uri: str | None = None) -> None:
        """At most every `interval_secs`: offer the directories that appeared under `pattern`, newest first,
        until one is taken (those older than it are passed over); for `models:/NAME@ALIAS`, the version the
        alias points at whenever it moved (`follow`).

        A directory is offered again whenever its files change (size or modification
        time), so one seen while it was still being copied file by file (`gcloud
        storage cp -r` writes in no particular order) is served once it is complete.
        """
        now = time.monotonic()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + interval_secs
            if registry.is_registered(pattern):
                self.follow(pattern, registry_uri)
                return
            try:
                found = {d: (_written_at(d), artifact.cache_key(d)) for d in artifact.complete_directories(pattern)}
            except (tf.errors.OpError, OSError) as exc:  # a directory removed while listing, a bucket hiccup
                log.warning("could not list %s (%s); looking again in %.0f s", pattern, exc, interval_secs)
                return
            if self._seen is None:  # what is there at start-up is not new
                self._seen = {d: state for d, (_, state) in found.items()}
                self._seen.setdefault(self.model_dir.rstrip("/"), None)
                return
            changed = [d for d, (_, state) in found.items() if d not in self._seen or self._seen[d] != state]
            for d in changed:
                if d in self._seen:
                    log.info("model directory %s changed since it was last considered; offering it again", d)
                self._seen[d] = found[d][1]
            for candidate in sorted(changed, key=lambda d: (found[d][0], d), reverse=True):
                if self.offer(candidate):
                    break
        finally:
            self._lock.release()

    def watch_beside(self, pattern: str, interval_secs: float, registry_uri: str | None = None) -> None:
        """`watch`, in a thread of its own when a look is due: the batch that finds it due never waits for the
        poll, the download, the load, the compile or the precision timing (a registry that does not answer
        holds only that thread, up to its timeouts). The swap itself is `offer`'s assignment of `current`,
        which the next batch reads; a batch already running keeps the model it started with."""
        if time.monotonic() < self._next_check or self._lock.locked():
            return
        threading.Thread(target=self._watch_logged, args=(pattern, interval_secs, registry_uri), daemon=True,
                         name="complaints-model-watch").start()

    def _watch_logged(self, pattern: str, interval_secs: float, registry_uri: str | None) -> None:
        try:
            self.watch(pattern, interval_secs, registry_uri)
        except Exception:  # a look that fails is logged; the thread ends, the serving model stays
            log.exception("looking for a new model at %s failed; still serving %s", pattern, self.current.version)

    def follow(self, alias: str, registry_uri: str | None) -> bool:
        """Offer the version `alias` (models:/NAME@ALIAS) points at now, if it is not the one serving; True if
        it was taken. A registry that does not answer is counted and logged, and the current model serves on;
        a version the registry cannot give (deleted, untagged, tampered) is refused like any candidate."""
        reference = registry.Reference.parse(alias)
        pointed: tuple[str, str] | None = None
        try:
            record = registry.version_of(reference, registry.registry_uri(registry_uri))
            serving = registry.lineage_of(self.current.metadata) or {}
            pointed = (reference.name, str(record.version))
            if (serving.get("name"), serving.get("version")) == pointed or pointed in self._refused:
                return False  # already serving it, or refused it once (the alias must move to change that)
            resolved = registry.resolve(alias, registry_uri)
        except registry.RegistryUnreachable as exc:
            self._count("registry_unreachable")
            telemetry.REGISTRY_UNREACHABLE.inc()
            log.warning("%s; still serving %s", exc, self.current.version)
            return False
        except UserError as exc:  # the alias is gone (its version deleted), or its version is unfit
            key = pointed or (reference.name, str(exc))
            if key in self._refused:
                return False
            self._refused.add(key)
            return self._refuse(alias, str(exc))
        taken = self.offer(resolved.model_dir)
        if not taken:
            self._refused.add(pointed)
        return taken

    def _serving(self, model_dir: str) -> ServingModel:
        """The process's ServingModel for this unchanged directory and settings, built and warmed up once.

        RunInference keeps the slot in Beam's `shared.Shared`, but Beam keeps only the
        most recently acquired shared object of a process alive, and the stateful
        `BatchElements` before RunInference acquires its own (`WithSharedKey`) each time
        a DoFn is set up. A runner that sets up fresh DoFns for every bundle (Beam's
        local streaming runner) would so drop the model and load and compile it again
        for every bundle. The last ServingModel is therefore kept here, one entry.
        """
        key = (artifact.cache_key(model_dir), self.xla, self.sizes, self.asked)
        with _KEPT_LOCK:
            serving = _KEPT.get(key) if key[0] is not None else None
            if serving is None:
                serving = choose(artifact.load(model_dir), model_dir, self.asked, self.xla, self.sizes)
                _LOADS[model_dir] += 1
                if key[0] is not None:
                    _KEPT.clear()  # one entry, as artifact.load keeps: a swap frees the old model
                    _KEPT[key] = serving
            if self.warm_up and not serving.warm:
                serving.warm_up()
        return serving

    def _refuse(self, model_dir: str, why: str) -> bool:
        self._count("model_refused")
        telemetry.MODEL_REFUSED.inc()
        log.warning("refused model %s: %s; still serving %s", model_dir, why, self.current.version)
        return False


def _announce(serving: ServingModel, model_dir: str) -> None:
    """A model taken into service: the log line, and the live job's precision gauges."""
    lineage = registry.lineage_of(serving.metadata)
    log.info("serving model %s from %s%s (%s, %s)", serving.version, model_dir,
             f" ({registry.described(lineage)})" if lineage else "", serving.path, described(serving.choice))
    telemetry.served_model(serving.version, lineage)
    telemetry.served_precision(serving.choice["served"], serving.choice.get("rows_per_second"))


def _written_at(model_dir: str) -> float:
    return files.stat(files.join(model_dir, artifact.METADATA_FILE)).mtime_nsec / 1e9
