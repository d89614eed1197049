"""The run summary: figures computed inside the pipeline, assembled and printed after it.

The counts come from combiners over the real outputs rather than from runner
metrics, so they are exact on every runner and can be checked against the files.
"""

from __future__ import annotations

import json
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindows

from model import baseline, registry
from pipelines.nightly import drift, shadow
from worker.precision_choice import described


class PredictionStats:
    """Per label counts, confidence sum and histogram, needs-review count, token and length figures: one part
    of `RunFigures`' accumulator.

    Its inputs are prediction tables (`worker.tables`), counted column-wise. The
    histograms use the bins of `model.baseline`, so they compare with the training
    baseline bin for bin (the drift section of the summary).
    """

    def create_accumulator(self):
        return {"predicted": 0, "labels": Counter(), "confidence_sum": 0.0, "needs_review": 0,
                "confidence_histogram": [0] * baseline.CONFIDENCE_BINS, "tokens": 0, "oov_tokens": 0,
                "length_histogram": [0] * len(baseline.LENGTH_EDGES)}

    def add_input(self, acc, predictions: pa.Table):
        confidence = predictions.column("confidence").to_numpy().astype(np.float64)
        tokens = predictions.column("tokens").to_numpy()
        acc["predicted"] += predictions.num_rows
        counts = pc.value_counts(predictions.column("label")).to_pylist()
        acc["labels"].update({count["values"]: count["counts"] for count in counts})
        acc["confidence_sum"] += float(confidence.sum())
        acc["needs_review"] += int(np.count_nonzero(predictions.column("needs_review").to_numpy(zero_copy_only=False)))
        acc["confidence_histogram"] = _add_bins(acc["confidence_histogram"], baseline.confidence_bins(confidence))
        acc["tokens"] += int(tokens.sum())
        acc["oov_tokens"] += int(predictions.column("oov_tokens").to_numpy().sum())
        acc["length_histogram"] = _add_bins(acc["length_histogram"], baseline.length_bins(tokens))
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["labels"].update(acc["labels"])
            for key in ("predicted", "confidence_sum", "needs_review", "tokens", "oov_tokens"):
                merged[key] += acc[key]
            for key in ("confidence_histogram", "length_histogram"):
                merged[key] = [a + b for a, b in zip(merged[key], acc[key], strict=True)]
        return merged

    def extract_output(self, acc):
        return {**acc, "labels": dict(acc["labels"])}


def _add_bins(histogram: list[int], bins: np.ndarray) -> list[int]:
    return (np.asarray(histogram) + np.bincount(bins, minlength=len(histogram))).tolist()


class DeadLetterStats:
    """Count of dead letters per reason: one part of `RunFigures`' accumulator."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, letter):
        acc[letter["reason"]] += 1
        return acc

    def merge_accumulators(self, accumulators):
        merged = Counter()
        for acc in accumulators:
            merged.update(acc)
        return merged

    def extract_output(self, acc):
        return dict(acc)


ROWS_IN, PREDICTION, DEAD_LETTER, FILES = "rows_in", "predictions", "dead_letters", "files"
WORDS = "words"  # word id → count over every classified text: the drift check's word signal
SERVED = "served"  # precision choice (JSON) → rows it labelled (`worker.transform.SERVED`)


def _files() -> dict:
    return {"read": 0, "footer_rows": 0, "skipped": Counter()}


class RunFigures:
    """Rows in, the prediction figures, the dead letters per reason and the files, in one accumulator.

    Rows in and predictions arrive as tables, dead letters as records, files as the
    reader's records (`pipelines.nightly.reading.FILES`): the rows their footers promise are
    what the job checks rows in against.
    """

    def __init__(self):
        self.predictions, self.dead_letters = PredictionStats(), DeadLetterStats()

    def create(self) -> dict:
        return {ROWS_IN: 0, PREDICTION: self.predictions.create_accumulator(),
                DEAD_LETTER: self.dead_letters.create_accumulator(), FILES: _files(), WORDS: Counter(),
                SERVED: Counter()}

    def add(self, acc: dict, tag: str, value) -> dict:
        if tag == ROWS_IN:
            acc[ROWS_IN] += value.num_rows
        elif tag == PREDICTION:
            acc[PREDICTION] = self.predictions.add_input(acc[PREDICTION], value)
        elif tag == WORDS:
            ids, counts = value
            acc[WORDS].update(dict(zip(ids.tolist(), counts.tolist(), strict=True)))
        elif tag == SERVED:
            acc[SERVED][value[0]] += value[1]
        elif tag == FILES:
            if value["skipped"]:
                acc[FILES]["skipped"][value["skipped"]] += 1
            else:
                acc[FILES]["read"] += 1
                acc[FILES]["footer_rows"] += value["rows"]
        else:
            acc[DEAD_LETTER] = self.dead_letters.add_input(acc[DEAD_LETTER], value)
        return acc

    def merge(self, accumulators) -> dict:
        accumulators = list(accumulators)
        files = _files()
        for a in accumulators:
            files["read"] += a[FILES]["read"]
            files["footer_rows"] += a[FILES]["footer_rows"]
            files["skipped"].update(a[FILES]["skipped"])
        words, served = Counter(), Counter()
        for a in accumulators:
            words.update(a[WORDS])
            served.update(a[SERVED])
        return {ROWS_IN: sum(a[ROWS_IN] for a in accumulators), FILES: files, WORDS: words, SERVED: served,
                PREDICTION: self.predictions.merge_accumulators([a[PREDICTION] for a in accumulators]),
                DEAD_LETTER: self.dead_letters.merge_accumulators([a[DEAD_LETTER] for a in accumulators])}

    def extract(self, acc: dict) -> dict:
        words = sorted(acc[WORDS].items())
        return {ROWS_IN: acc[ROWS_IN], FILES: {**acc[FILES], "skipped": dict(acc[FILES]["skipped"])},
                WORDS: {"ids": [i for i, _ in words], "counts": [c for _, c in words]}, SERVED: dict(acc[SERVED]),
                PREDICTION: self.predictions.extract_output(acc[PREDICTION]),
                DEAD_LETTER: self.dead_letters.extract_output(acc[DEAD_LETTER])}


class AccumulateFigures(beam.DoFn):
    """One stream's figures, one partial accumulator per bundle.

    What goes on to the final merge is one small dict a bundle, not every record: on
    the local runner a Flatten is a stage boundary, across which each record would be
    encoded and decoded again.
    """

    def __init__(self, tag: str):
        self.tag, self.figures = tag, RunFigures()

    def start_bundle(self):
        self.acc = self.figures.create()

    def process(self, element):
        self.acc = self.figures.add(self.acc, self.tag, element)
        return ()

    def finish_bundle(self):
        yield GlobalWindows.windowed_value_at_end_of_window(self.acc)


class MergeFigures(beam.CombineFn):
    """The partial accumulators of every stream and bundle → the run's figures."""

    def __init__(self):
        self.figures = RunFigures()

    def create_accumulator(self):
        return self.figures.create()

    def add_input(self, acc, partial):
        return self.figures.merge([acc, partial])

    def merge_accumulators(self, accumulators):
        return self.figures.merge(accumulators)

    def extract_output(self, acc):
        return self.figures.extract(acc)


class ComputeRunStats(beam.PTransform):
    """(input tables, prediction tables, dead letters, files[, word counts, precisions served]) → one JSON string
    of run figures.

    Rows in are counted on the tables as read, independently of the outputs, so the
    books (rows in = predicted + dead-lettered) check the classification itself. One
    merge for all streams rather than a CombineGlobally each: each is half a dozen
    transforms, and on the local runner every transform costs construction and
    bundle-processor time at each run, whatever the archive's size.
    """

    def expand(self, pcolls):
        tables, predictions, dead_letters, files, *batches = pcolls
        letters = dead_letters.items()  # {part: PCollection}: the parts are never flattened (worker.transform)
        partials = [
            tables | "FiguresIn" >> beam.ParDo(AccumulateFigures(ROWS_IN)),
            files | "FiguresFiles" >> beam.ParDo(AccumulateFigures(FILES)),
            predictions | "FiguresPredicted" >> beam.ParDo(AccumulateFigures(PREDICTION)),
            *(part | f"Figures{name}" >> beam.ParDo(AccumulateFigures(DEAD_LETTER)) for name, part in letters),
            *(part | f"Figures{tag.capitalize()}" >> beam.ParDo(AccumulateFigures(tag))
              for tag, part in zip((WORDS, SERVED), batches, strict=False)),
        ]
        return (
            partials
            | "Together" >> beam.Flatten()
            | "Merge" >> beam.CombineGlobally(MergeFigures())
            | "ToJson" >> beam.Map(json.dumps, ensure_ascii=False)
        )


def served(stats: dict, setting: str) -> dict:
    """What labelled the night, from the batches themselves (`worker.transform.SERVED`): the choice that labelled
    most rows, with how it was made, and the rows each precision labelled (several where workers chose
    differently, on any runner)."""
    choices = stats.get(SERVED) or {}
    if not choices:
        return {"setting": setting, "served": None, "why": "no row was labelled"}
    rows: Counter[str] = Counter()
    for choice, count in choices.items():
        rows[str(json.loads(choice)["served"])] += count
    return {**json.loads(max(choices, key=choices.get)), "setting": setting, "rows_by_precision": dict(rows)}


def assemble(stats: dict, *, model_version: str, inputs: list[dict], output: str,
             started: str, finished: str, seconds: float, lineage: dict | None = None) -> dict:
    """The summary.json document; the commit adds the names of the files it published (`output_files`)."""
    pred = stats["predictions"]
    predicted = pred["predicted"]
    dead = stats["dead_letters"]
    dead_total = sum(dead.values())
    labels = dict(sorted(pred["labels"].items(), key=lambda kv: (-kv[1], kv[0])))
    return {
        "rows_in": stats["rows_in"],
        "predicted": predicted,
        "dead_lettered": dead_total,
        "dead_lettered_by_reason": dict(sorted(dead.items())),
        "balanced": stats["rows_in"] == predicted + dead_total,
        "labels": {k: {"count": v, "share": v / predicted} for k, v in labels.items()},
        "mean_confidence": pred["confidence_sum"] / predicted if predicted else None,
        "needs_review": pred["needs_review"],
        "needs_review_share": pred["needs_review"] / predicted if predicted else None,
        "confidence_histogram": pred["confidence_histogram"],
        "oov_share": pred["oov_tokens"] / pred["tokens"] if pred["tokens"] else None,
        "length_histogram": pred["length_histogram"],
        "model_version": model_version,
        **({"registry": lineage} if lineage else {}),  # models:/…: which registered version labelled the night
        "inputs": inputs,
        "inputs_skipped": dict(sorted(stats["files"]["skipped"].items())),
        "output": output,
        "started_at": started,
        "finished_at": finished,
        "seconds": round(seconds, 3),
        "rows_per_second": round(stats["rows_in"] / seconds, 1) if seconds > 0 else None,
    }


def _review_lines(review: dict) -> list[str]:
    """The review loop so far (--corrections), in two or three lines."""
    if not review["with_model_label"]:
        return [f"review loop    {review['reviewed']:>10,} reviewed (none with the model's label beside the answer)"]
    low, high = review["accuracy_ci95"]
    versions = ", ".join(f"{v} {r['rate']:.1%} of {r['reviewed']:,}" for v, r in
                         review["correction_rate_by_version"].items())
    return [f"review loop    {review['reviewed']:>10,} reviewed; model right on {review['accuracy_on_reviewed']:.1%} "
            f"(95% CI {low:.1%}-{high:.1%}); {review['disagreements']:,} disagreement(s)",
            f"  corrected, per model version: {versions}"]


def render(summary: dict) -> str:
    """One screen for the terminal."""
    lines = [
        f"rows in        {summary['rows_in']:>10,}",
        f"predicted      {summary['predicted']:>10,}",
        f"dead-lettered  {summary['dead_lettered']:>10,}"
        + (f"  ({', '.join(f'{k} {v}' for k, v in summary['dead_lettered_by_reason'].items())})"
           if summary["dead_lettered"] else ""),
        f"accounted for  {'yes' if summary['balanced'] else 'NO: rows in ≠ predicted + dead-lettered'}",
    ]
    if summary.get("inputs_skipped"):
        skipped = summary["inputs_skipped"]
        lines.append(f"files skipped  {sum(skipped.values()):>10,}  "
                     f"({', '.join(f'{k} {v}' for k, v in skipped.items())})")
    if summary["predicted"]:
        lines += [
            f"mean confidence {summary['mean_confidence']:.3f}; needs review {summary['needs_review']:,} "
            f"({summary['needs_review_share']:.1%})",
            "top labels:",
        ]
        for name, figures in list(summary["labels"].items())[:8]:
            lines.append(f"  {figures['count']:>9,}  {figures['share']:6.1%}  {name}")
        if len(summary["labels"]) > 8:
            lines.append(f"  … and {len(summary['labels']) - 8} more labels")
    if "drift" in summary:
        lines += drift.render(summary["drift"])
    if summary.get("report"):
        lines.append(f"warning: report.png {summary['report']}")
    if summary.get("bigquery"):
        bq = summary["bigquery"]
        lines.append(f"BigQuery       {bq['rows']:>10,} rows → {bq['table']}, {bq['dead_letters']:,} dead letters → "
                     f"{bq['dead_letters_table']} (the night's rows replaced, run {bq['run_id']})")
    if summary.get("took_over_hold_of"):
        lines.append(f"took over the output from {summary['took_over_hold_of']}, which had ended without releasing it")
    if summary.get("review"):
        lines += _review_lines(summary["review"])
    if summary.get("shadow"):
        lines += shadow.render(summary["shadow"])
    if summary.get("precision"):
        lines.append(described(summary["precision"]))
    lines += [
        f"model {summary['model_version']}"
        + (f" ({registry.described(summary['registry'])})" if summary.get("registry") else "")
        + f"; {summary['seconds']:.1f}s, {summary['rows_per_second'] or 0:,.0f} rows/s",
        f"output {summary['output']} (complete: _SUCCESS written)",
    ]
    return "\n".join(lines)
