"""The nightly job on a Dask cluster: Beam's DaskRunner, with the gaps a real job falls into closed.

Beam 2.77's DaskRunner (`apache_beam.runners.dask`) translates Create, ParDo,
GroupByKey and Flatten into Dask bags, and runs them on a `distributed` cluster.
Five of its choices lose or corrupt data in a job shaped like ours, so this runner,
a subclass, replaces them (measured here; each has a test in tests/test_dask.py):

1. **Only the last transform's graph is computed** ("we can get away with computing
   just the last value"). A job with several sinks ran only the last one. Here every
   leaf of the pipeline (a PCollection nothing consumes) is computed, together, so
   each shared step still runs once.
2. **A multi-output ParDo's outputs arrive mixed**: every consumer of any of its
   outputs got the main and the tagged elements in one bag. Here a ParDo's bag holds
   (tag, element) pairs, and each consumer reads its own tag.
3. **What a DoFn emits in `finish_bundle` is dropped** (the results are taken before
   `finish_bundle` runs), so the last batch of every bundle vanished. Here the
   results are taken after it.
4. **A step read by two consumers could reach only one of them**: a partition may be
   a lazy iterator, and Dask hands the same object to every task that depends on it,
   so the first consumer used it up (the job counted 0 rows read while it labelled
   them all). Here every partition is a list.
5. **A side input is computed again for every task that reads it**: inside the task
   (a nested compute of its whole upstream graph), or, passed as a Dask `Item`, with
   its graph optimised apart, which renamed the steps it shares with the job and so
   ran them again. Beam's file writes read their temporary directory and written
   files as side inputs, so the writes ran again, into new temporary directories,
   and the finalize step failed on files another run had moved. Here a side input is
   one node over its bag's own partitions, computed once, and the job's graph is
   submitted unoptimised (each step runs once; fusing would copy shared steps).

Each bundle's DoFn is set up, used and torn down inside its task, as Beam's runner
does; the model is loaded once per worker process all the same (RunInference's
shared handle and `worker.handler`'s process cache). Batch only: the live job stays
on the local runner and Dataflow.
"""

from __future__ import annotations

import sys
import typing as t

from apache_beam import pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as evaluator
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.core import DoFn
from apache_beam.transforms.sideinputs import SideInputMap

from model.errors import UserError

DASK_RUNNER = f"{__name__}.DaskRunner"
BEAM_VERSION = "2.77"  # the Beam whose Dask runner and runner internals the fixes below were written against


class _Materialized:
    """A side input's elements, computed once, as the windowed values `SideInputMap` iterates."""

    def __init__(self, values: list, window_fn):
        self.values, self.window_fn = values, window_fn

    def __iter__(self):
        return (evaluator.get_windowed_value(value, self.window_fn) for value in self.values)


def _run_bundle(items, do_fn, window_fn, label: str, views: list, args, kwargs,
                *side_values: list) -> list[tuple[str | None, t.Any]]:
    """One partition through a DoFn: (tag, element) for everything it emits, `finish_bundle` included.

    `views` are the side inputs' (view type, view options, window mapping), `side_values` their elements.
    """
    side_inputs = [SideInputMap(kind, options, _Materialized(values, mapping))
                   for (kind, options, mapping), values in zip(views, side_values, strict=True)] or None
    receivers = evaluator.OneReceiver()
    handler = _OutputHandler(window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(do_fn), handler, context=DoFnContext(label, state=None), side_inputs=side_inputs,
        input_args=args, input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()  # before the results are taken: its outputs count too
    invoker.invoke_teardown()
    return [(value.tag, value.value.value) if isinstance(value, evaluator.TaggedOutput) else (None, value.value)
            for value in receivers.values]


class _TaggedParDo(evaluator.DaskBagOp):
    """A ParDo whose bag holds (tag, element) pairs, so each output can be read on its own."""

    def apply(self, input_bag, side_inputs=None):
        """`side_inputs`: (view type, view options, window mapping, bag) per side input."""
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        views = [side[:3] for side in side_inputs or []]
        values = [_whole(side[3]) for side in side_inputs or []]
        return input_bag.map(evaluator.get_windowed_value, window_fn).map_partitions(
            _run_bundle, transform.fn, window_fn, transform.label, views, list(args), kwargs, *values)


def _concatenated(parts) -> list:
    return [value for part in parts for value in part]


def _whole(bag):
    """A side input as one graph node over the bag's own partitions.

    Not `bag.reduction`: Dask optimises such an Item's graph on its own when a task
    takes it, renaming the steps it shares with the rest of the job, which then ran
    twice (measured: a step upstream of a side input ran once per reader).
    """
    import dask

    return dask.delayed(_concatenated, pure=True)(bag.to_delayed(optimize_graph=False))


def _select(pairs, tag: str | None) -> list:
    return [element for found, element in pairs if found == tag]


def _elements_of(bag, tag: str | None):
    """One output of a tagged ParDo, as lists: a lazy partition would be used up by its first reader."""
    return bag.map_partitions(_select, tag)


def _as_list(partition) -> list:
    return partition if isinstance(partition, list) else list(partition)


class _Translate(PipelineVisitor):
    """Beam's bag visitor, with ParDos tagged and every leaf kept."""

    def __init__(self, bag_kwargs: dict):
        self.bag_kwargs = bag_kwargs
        self.bags: dict[AppliedPTransform, t.Any] = {}
        self.tagged: set[AppliedPTransform] = set()
        self.consumed: set[int] = set()
        self.produced: list[tuple[AppliedPTransform, pvalue.PCollection]] = []

    def _bag_of(self, value: pvalue.PCollection):
        producer = value.producer
        bag = self.bags[producer]
        return _elements_of(bag, value.tag) if producer in self.tagged else bag

    def visit_transform(self, node: AppliedPTransform) -> None:
        kind = type(node.transform)
        op_class = _TaggedParDo if kind in evaluator.TRANSLATIONS and evaluator.TRANSLATIONS[kind] is \
            evaluator.ParDo else evaluator.TRANSLATIONS.get(kind, evaluator.NoOp)
        op = op_class(node, bag_kwargs=self.bag_kwargs)
        arguments = {"input_bag": None, "side_inputs": None}
        inputs = [value for value in node.inputs if not isinstance(value, pvalue.PBegin)]
        self.consumed.update(id(value) for value in inputs)
        if inputs:
            bags = [self._bag_of(value) for value in inputs if value.producer in self.bags]
            arguments["input_bag"] = bags if isinstance(op, evaluator.Flatten) or len(bags) != 1 else bags[0]
        if node.side_inputs:
            if op_class is not _TaggedParDo:
                raise NotImplementedError(f"{node.full_label}: side inputs outside a ParDo")
            self.consumed.update(id(side.pvalue) for side in node.side_inputs)
            arguments["side_inputs"] = [(type(side), side._view_options(), side._window_mapping_fn,
                                         self._bag_of(side.pvalue)) for side in node.side_inputs]
        self.bags[node] = op.apply(**arguments).map_partitions(_as_list)  # every reader gets all of it
        if op_class is _TaggedParDo:
            self.tagged.add(node)
        self.produced.extend((node, output) for output in node.outputs.values()
                             if isinstance(output, pvalue.PCollection))

    def leaves(self) -> list:
        """The bags of every PCollection nothing reads: computing them all runs the whole pipeline."""
        return [self._bag_of(output) for _, output in self.produced if id(output) not in self.consumed]


class DaskRunnerResult(beam_dask.DaskRunnerResult):
    """Waits with a progress bar on the terminal; `metrics()` stays unsupported (the job's summary does not
    use runner metrics)."""

    def wait_until_finish(self, duration=None) -> str:
        """Wait, then close the client once the job has ended (a timed wait that ends early keeps it open)."""
        try:
            if duration is None and sys.stderr.isatty():
                from distributed import progress

                progress(self.futures, multi=False)
            return super().wait_until_finish(duration)
        finally:
            if self._state in (PipelineState.DONE, PipelineState.FAILED) or duration is None:
                self.client.close()


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with every leaf computed, outputs kept apart by tag and `finish_bundle` outputs kept."""

    def run_pipeline(self, pipeline, options):
        import distributed

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True,
                                                                               current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        client = distributed.Client(**dask_options)
        try:
            print(f"Dask: scheduler {client.scheduler.address}, dashboard {client.dashboard_link}", file=sys.stderr,
                  flush=True)
            pipeline.replace_all(dask_overrides())
            translate = _Translate(bag_kwargs)
            pipeline.visit(translate)
            # One submission of every leaf, unoptimised: a step they share runs once.
            futures = client.compute(translate.leaves(), optimize_graph=False)
        except BaseException:
            client.close()
            raise
        return DaskRunnerResult(client, futures)


def refuse_other_beam(version: str) -> None:
    """The fixes above reach into Beam's Dask runner and runner internals as they are in `BEAM_VERSION`; another
    Beam may have moved them, and a job that half-works there would lose data silently."""
    if not version.startswith(BEAM_VERSION + "."):
        raise UserError(f"--runner DaskRunner was written for Apache Beam {BEAM_VERSION}.x, and this is {version}: "
                        f"install apache-beam=={BEAM_VERSION}.* (the project's lock), or run on the local runner")
