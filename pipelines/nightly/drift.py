"""Does the model still fit tonight's complaints? Tonight's predictions against the model's own on held-out data.

Like with like: the reference is what the exported model predicted on its test split
(`model/reference.py`), never the true labels, which a model that favours some
classes would never match however unchanged the data.

Thresholds for tonight's size: how far a night of unchanged data falls from the
reference by chance depends on how many rows it has (a Jensen–Shannon figure over 32
bins from 300 rows is mostly sampling noise). So each signal's threshold is derived
at run time by resampling: RESAMPLES times, draw a night of tonight's row count and a
reference of the reference's row count, both from the reference rows, and measure the
signal between them; the threshold is the mean plus SIGMAS standard deviations of
those draws (NannyML's rule for its chunk thresholds), and never below the signal's
FLOOR, so that on a huge night a difference too small to matter does not alert.
Mean + 3σ rather than a high quantile: it is stable with a few hundred draws, and
for these right-skewed distances it sits near their 99.5th percentile.

Distributions are compared with the Jensen–Shannon divergence (base 2: 0 identical,
1 disjoint), labels also with the L-infinity distance (the largest change in one
category's share), as Vertex AI model monitoring does; shares and means by their
plain difference. Every figure of tonight comes from the run's own combiners
(summary.py): no second pass over the data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from model import baseline
from model.errors import UserError
from model.reference import Figures, Reference
from pipelines.config import DEFAULT_THRESHOLD

RESAMPLES = 200
SIGMAS = 3.0
FLOORS = {  # the smallest change worth an alert, however large the night
    "labels_js": 0.01, "labels_linf": 0.02, "confidence_js": 0.01, "length_js": 0.01, "words_js": 0.01,
    "mean_confidence_fall": 0.02, "needs_review_rise": 0.02, "oov_share_rise": 0.01,
    "labels_js_vs_previous": 0.01, "labels_linf_vs_previous": 0.02,
}
DIVERGENCES = {"labels_js", "labels_linf", "confidence_js", "length_js", "words_js",
               "labels_js_vs_previous", "labels_linf_vs_previous"}
FIXED_THRESHOLD = 0.1  # models without a reference: the figures and thresholds of before
SHARE_THRESHOLD = 0.1


def js_divergence(p, q) -> float:
    """Jensen–Shannon divergence, base 2, of two distributions (normalised here)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    p = p / p.sum() if p.sum() else p
    q = q / q.sum() if q.sum() else q
    m = (p + q) / 2

    def kl(x):
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def _aligned(today: dict[str, float], reference: dict[str, float]) -> tuple[list[float], list[float]]:
    names = sorted(set(today) | set(reference))
    return [today.get(n, 0.0) for n in names], [reference.get(n, 0.0) for n in names]


def label_figures(today: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    p, q = _aligned(today, reference)
    return {"js_divergence": round(js_divergence(p, q), 6),
            "linf_distance": round(max(abs(a - b) for a, b in zip(p, q, strict=True)), 6)}


def distances(a: Figures, b: Figures) -> dict[str, float]:
    """Every signal between a night `a` and a reference `b` (positive: `a` looks worse)."""
    found = {
        "labels_js": js_divergence(a.labels, b.labels),
        "labels_linf": float(np.abs(a.labels - b.labels).max()),
        "confidence_js": js_divergence(a.confidence, b.confidence),
        "mean_confidence_fall": b.mean_confidence - a.mean_confidence,
        "needs_review_rise": a.needs_review_share - b.needs_review_share,
        "oov_share_rise": a.oov_share - b.oov_share,
        "length_js": js_divergence(a.length, b.length),
    }
    if a.words is not None and b.words is not None:
        found["words_js"] = js_divergence(a.words, b.words)
    return found


def noise(reference: Reference, rows: int, review_threshold: float, against_rows: int | None = None,
          resamples: int = RESAMPLES, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(mean, standard deviation) of each signal between a night of `rows` and a reference of
    `against_rows` (the reference's own size by default), both drawn from the reference."""
    rng = np.random.default_rng(seed)
    uniform = np.full(reference.rows, 1 / reference.rows)
    draws = defaultdict(list)
    for _ in range(resamples):
        night = reference.figures(rng.multinomial(rows, uniform), review_threshold)
        other = reference.figures(rng.multinomial(against_rows or reference.rows, uniform), review_threshold)
        for name, value in distances(night, other).items():
            draws[name].append(value)
    return {name: (float(np.mean(v)), float(np.std(v))) for name, v in draws.items()}


def thresholds(reference: Reference, rows: int, review_threshold: float, override: float | None = None,
               against_rows: int | None = None, suffix: str = "") -> dict[str, float]:
    """Each signal's alert threshold for a night of `rows`: mean + SIGMAS·σ of the resampled noise, at
    least its FLOOR; `override` replaces the divergence and L-infinity thresholds."""
    found = {}
    for name, (mean, sd) in noise(reference, rows, review_threshold, against_rows, seed=rows).items():
        key = name + suffix
        if key not in FLOORS:  # against the previous night only the label signals are compared
            continue
        if override is not None and key in DIVERGENCES:
            found[key] = override
        else:
            found[key] = max(FLOORS[key], mean + SIGMAS * sd)
    return found


def night(summary: dict, words: dict | None, labels: list[str], word_bins: np.ndarray | None) -> Figures:
    """Tonight's figures from the run's combiners (`summary.json`'s fields and the word counts)."""
    counts = None
    if word_bins is not None and words:
        ids = np.asarray(words["ids"], dtype=np.int64)
        keep = ids < len(word_bins)
        counts = np.bincount(word_bins[ids[keep]], np.asarray(words["counts"], dtype=np.float64)[keep],
                             minlength=word_bins.max() + 1)
    shares = summary["labels"]
    return Figures(
        labels=np.array([shares.get(n, {}).get("share", 0.0) for n in labels]),
        confidence=np.asarray(baseline.shares(summary["confidence_histogram"])),
        length=np.asarray(baseline.shares(summary["length_histogram"])),
        words=counts / counts.sum() if counts is not None and counts.sum() else None,
        mean_confidence=summary["mean_confidence"], needs_review_share=summary["needs_review_share"],
        oov_share=summary["oov_share"] or 0.0, rows=summary["predicted"])


def section(summary: dict, model_baseline: dict | None, threshold: float | None = DEFAULT_THRESHOLD,
            previous: dict | None = None, reference: Reference | None = None, words: dict | None = None,
            labels: list[str] | None = None, review_threshold: float = baseline.DEFAULT_REVIEW_THRESHOLD) -> dict:
    """The `drift` section of summary.json: figures, thresholds, and which signals are over them."""
    if not model_baseline:
        return {"baseline": None, "alert": False, "over_threshold": [],
                "note": "the model has no baseline (trained before drift checks); retrain to get one"}
    if not summary["predicted"]:
        return {"baseline": "metadata.json", "alert": False, "over_threshold": [], "note": "nothing was predicted"}
    if reference is None or labels is None:
        return _fixed_section(summary, model_baseline, threshold, previous)
    tonight, whole = night(summary, words, labels, reference.word_bins), reference.figures(None, review_threshold)
    values = distances(tonight, whole)
    limits = thresholds(reference, summary["predicted"], review_threshold, threshold)
    if previous is not None:
        before = label_figures({n: f["share"] for n, f in summary["labels"].items()},
                               {n: f["share"] for n, f in previous["labels"].items()})
        values["labels_js_vs_previous"], values["labels_linf_vs_previous"] = before["js_divergence"], \
            before["linf_distance"]
        against = thresholds(reference, summary["predicted"], review_threshold, threshold,
                             against_rows=max(1, previous.get("predicted") or reference.rows), suffix="_vs_previous")
        limits.update({k: against[k] for k in ("labels_js_vs_previous", "labels_linf_vs_previous")})
    figures = {name: {"value": round(value, 6), "threshold": round(limits[name], 6), "alert": value > limits[name]}
               for name, value in values.items()}
    over = [name for name, f in figures.items() if f["alert"]]
    return {
        "baseline": f"{model_baseline['reference']['file']} ({reference.rows} test rows, as the model predicts them)",
        "thresholds": ("--drift-threshold for divergences, derived for shares" if threshold is not None else
                       f"derived for {summary['predicted']} rows: mean + {SIGMAS:g}σ of {RESAMPLES} resampled "
                       "unchanged nights, at least each signal's floor"),
        "alert": bool(over),
        "over_threshold": over,
        "signals": figures,
        "today": _shown(tonight),
        "reference": _shown(whole),
        "compared_to_previous": previous.get("output") if previous is not None else None,
    }


@dataclass(frozen=True)
class Compared:
    """What tonight is compared with: the model's baseline and reference, and the previous night."""

    baseline: dict | None
    labels: list[str]
    reference: Reference | None
    previous: dict | None = None

    @classmethod
    def of(cls, model_dir: str, metadata: dict, previous: dict | None = None) -> Compared:
        from model import artifact, reference

        base = metadata.get("baseline")
        labels, _ = artifact.read_metadata(model_dir)
        problem = _baseline_problem(base)
        if problem:
            raise UserError(f"model directory {model_dir}: metadata.json's drift baseline {problem}; retrain the "
                            "model")
        size = (base or {}).get("reference", {}).get("vocabulary_size")
        found = reference.read(model_dir, len(labels), size) if size else None
        return cls(base, labels, found, previous)

    def section(self, summary: dict, words: dict | None, threshold: float | None, review_threshold: float) -> dict:
        return section(summary, self.baseline, threshold, self.previous, self.reference, words, self.labels,
                       review_threshold)


def _baseline_problem(base) -> str | None:
    """What the drift check and the report would trip over after the night was labelled: a baseline that is not
    an object, or any figure in it that is not a finite number."""
    if base is None:
        return None
    if not isinstance(base, dict):
        return "is not an object"
    stack = [("baseline", base)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"has {item} at {where[:120]}"
    for key in ("label_shares", "confidence_histogram", "length_histogram"):
        if key in base and not isinstance(base[key], dict | list):
            return f"has no {key}"
    return None


def _shown(f: Figures) -> dict:
    return {"mean_confidence": f.mean_confidence, "needs_review_share": f.needs_review_share,
            "oov_share": f.oov_share, "confidence_histogram": [round(x, 6) for x in f.confidence.tolist()],
            "length_histogram": [round(x, 6) for x in f.length.tolist()], "rows": f.rows}


def _fixed_section(summary: dict, model_baseline: dict, threshold: float | None, previous: dict | None) -> dict:
    """A model trained before the reference: tonight's predictions against the training split's true label
    shares, with fixed thresholds, as before. It says so: a weak model alerts here on unchanged data."""
    threshold = FIXED_THRESHOLD if threshold is None else threshold
    today = {name: figures["share"] for name, figures in summary["labels"].items()}
    labels = label_figures(today, model_baseline["label_shares"])
    signals = {
        "labels_js": (labels["js_divergence"], threshold),
        "labels_linf": (labels["linf_distance"], threshold),
        "confidence_js": (js_divergence(summary["confidence_histogram"], model_baseline["confidence_histogram"]),
                          threshold),
        "mean_confidence_fall": (model_baseline["mean_confidence"] - summary["mean_confidence"], SHARE_THRESHOLD),
        "needs_review_rise": (summary["needs_review_share"] - model_baseline["needs_review_share"], SHARE_THRESHOLD),
        "oov_share_rise": ((summary["oov_share"] or 0.0) - model_baseline["oov_share"], SHARE_THRESHOLD),
        "length_js": (js_divergence(summary["length_histogram"], model_baseline["length_histogram"]), threshold),
    }
    if previous is not None:
        before = label_figures(today, {n: f["share"] for n, f in previous["labels"].items()})
        signals["labels_js_vs_previous"] = (before["js_divergence"], threshold)
        signals["labels_linf_vs_previous"] = (before["linf_distance"], threshold)
    figures = {name: {"value": round(value, 6), "threshold": limit, "alert": value > limit}
               for name, (value, limit) in signals.items()}
    over = [name for name, f in figures.items() if f["alert"]]
    return {
        "baseline": "metadata.json",
        "note": OLD_BASELINE,
        "thresholds": "fixed",
        "alert": bool(over),
        "over_threshold": over,
        "signals": figures,
        "compared_to_previous": previous.get("output") if previous is not None else None,
    }


OLD_BASELINE = ("this model has no drift reference (trained before it existed): predicted labels are compared "
                "with the training split's true labels at fixed thresholds, which alarm for a weak model; "
                "retrain to compare like with like at thresholds for tonight's size")


def not_checked(reason: str) -> dict:
    """The drift section of a night whose check failed after it was labelled: committed, and said so."""
    return {"baseline": None, "alert": False, "checked": False, "over_threshold": [], "note": reason}


def failed(drift: dict) -> bool:
    return drift.get("checked") is False


def render(drift: dict) -> list[str]:
    """One terminal line per signal, and a line on how the thresholds were set."""
    if failed(drift):
        return [f"warning: drift: not checked ({drift['note']}); the night was committed"]
    if not drift.get("signals"):
        return [f"drift: not checked ({drift.get('note', 'no figures')})"]
    lines = [f"drift: {'ALERT (' + ', '.join(drift['over_threshold']) + ')' if drift['alert'] else 'OK'}"]
    if drift.get("note"):
        lines.append(f"  note: {drift['note']}")
    elif drift.get("thresholds"):
        lines.append(f"  thresholds: {drift['thresholds']}")
    for name, f in drift["signals"].items():
        lines.append(f"  {name:<24} {f['value']:>8.3f}  threshold {f['threshold']:.3f}  "
                     f"{'ALERT' if f['alert'] else 'OK'}")
    return lines


def report_png(summary: dict, model_baseline: dict | None, previous: dict | None = None) -> bytes:
    """report.png: label shares today beside the reference (and the previous night), the confidence
    histograms, and each drift signal against its threshold."""
    import io

    from model.plots import pyplot

    plt = pyplot()
    figure, (left, middle, right) = plt.subplots(
        1, 3, figsize=(20, max(4.0, 0.28 * len(summary["labels"]) + 1.5)), gridspec_kw={"width_ratios": [3, 2, 2]})
    series = {"today": {n: f["share"] for n, f in summary["labels"].items()}}
    predicted_reference = (model_baseline or {}).get("predicted_label_shares")
    if predicted_reference:
        series["test split, predicted"] = predicted_reference
    elif model_baseline:
        series["training (true labels)"] = model_baseline["label_shares"]
    if previous is not None:
        series["previous night"] = {n: f["share"] for n, f in previous["labels"].items()}
    names = sorted(set().union(*series.values()), key=lambda n: -series["today"].get(n, 0.0))
    height = 0.8 / len(series)
    for i, (title, shares) in enumerate(series.items()):
        left.barh([k + i * height for k in range(len(names))], [shares.get(n, 0.0) for n in names], height,
                  label=title)
    left.set_yticks([k + height * (len(series) - 1) / 2 for k in range(len(names))], names, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("share of predictions")
    left.set_title("Predicted labels")
    left.legend()
    centres = [(i + 0.5) / baseline.CONFIDENCE_BINS for i in range(baseline.CONFIDENCE_BINS)]
    width = 0.4 / baseline.CONFIDENCE_BINS
    middle.bar([c - width / 2 for c in centres], baseline.shares(summary["confidence_histogram"]), width, label="today")
    if model_baseline:
        middle.bar([c + width / 2 for c in centres], model_baseline["confidence_histogram"], width,
                   label="test split at training")
    middle.set_xlabel("confidence")
    middle.set_ylabel("share of predictions")
    middle.set_title("Confidence")
    middle.legend()
    _signals_panel(right, summary.get("drift") or {})
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _signals_panel(axes, drift: dict) -> None:
    """Each signal as a share of its threshold: a bar past the line at 1 is an alert."""
    signals = drift.get("signals") or {}
    if not signals:
        axes.text(0.5, 0.5, f"drift not checked\n({drift.get('note', 'no figures')})", ha="center", va="center",
                  wrap=True)
        axes.set_axis_off()
        return
    names = list(signals)
    ratios = [max(0.0, f["value"]) / f["threshold"] if f["threshold"] else 0.0 for f in signals.values()]
    colours = ["tab:red" if f["alert"] else "tab:green" for f in signals.values()]
    axes.barh(range(len(names)), ratios, color=colours)
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(names)), [f"{n} ({signals[n]['value']:.3f} / {signals[n]['threshold']:.3f})"
                                        for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("value ÷ threshold (alert past 1)")
    axes.set_title("Drift signals against their thresholds")
