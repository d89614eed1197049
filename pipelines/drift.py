"""Does the model still fit tonight's complaints? Today's run figures against the training baseline.

Every figure comes from the run's own combiners (summary.py) and the baseline that
training recorded in metadata.json (model/baseline.py), so it costs no second pass
over the data. Distributions are compared with the Jensen–Shannon divergence (base 2,
so 0 = identical and 1 = disjoint) and, for labels, also the L-infinity distance (the
largest change in one category's share), as Vertex AI model monitoring does; shares
and means by their plain difference.
"""

from __future__ import annotations

import math

from model import baseline as bins

DEFAULT_THRESHOLD = 0.1  # divergence and L-infinity; see README "Drift" for why not Vertex's 0.3
SHARE_THRESHOLD = 0.1  # a rise of ten points in needs_review or out-of-vocabulary share, a fall in mean confidence


def js_divergence(p: list[float], q: list[float]) -> float:
    """Jensen–Shannon divergence, base 2, of two distributions (normalised here)."""
    p, q = bins.shares(p), bins.shares(q)
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x, y):
        return sum(a * math.log2(a / b) for a, b in zip(x, y, strict=True) if a > 0)

    return max(0.0, (kl(p, m) + kl(q, m)) / 2)


def _aligned(today: dict[str, float], reference: dict[str, float]) -> tuple[list[float], list[float]]:
    names = sorted(set(today) | set(reference))
    return [today.get(n, 0.0) for n in names], [reference.get(n, 0.0) for n in names]


def label_figures(today: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    p, q = _aligned(today, reference)
    return {"js_divergence": round(js_divergence(p, q), 6),
            "linf_distance": round(max(abs(a - b) for a, b in zip(p, q, strict=True)), 6)}


def section(summary: dict, model_baseline: dict | None, threshold: float = DEFAULT_THRESHOLD,
            previous: dict | None = None) -> dict:
    """The `drift` section of summary.json: figures, thresholds, and which signals are over them."""
    if not model_baseline:
        return {"baseline": None, "alert": False, "over_threshold": [],
                "note": "the model has no baseline (trained before drift checks); retrain to get one"}
    if not summary["predicted"]:
        return {"baseline": "metadata.json", "alert": False, "over_threshold": [], "note": "nothing was predicted"}
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
        "alert": bool(over),
        "over_threshold": over,
        "signals": figures,
        "today": {"mean_confidence": summary["mean_confidence"], "needs_review_share": summary["needs_review_share"],
                  "oov_share": summary["oov_share"],
                  "confidence_histogram": bins.shares(summary["confidence_histogram"]),
                  "length_histogram": bins.shares(summary["length_histogram"])},
        "training": {k: model_baseline[k] for k in ("mean_confidence", "needs_review_share", "oov_share",
                                                     "confidence_histogram", "length_histogram")},
        "compared_to_previous": previous.get("output") if previous is not None else None,
    }


def render(drift: dict) -> list[str]:
    """One terminal line per signal."""
    if not drift.get("signals"):
        return [f"drift: not checked ({drift.get('note', 'no figures')})"]
    lines = [f"drift: {'ALERT (' + ', '.join(drift['over_threshold']) + ')' if drift['alert'] else 'OK'}"]
    for name, f in drift["signals"].items():
        lines.append(f"  {name:<24} {f['value']:>8.3f}  threshold {f['threshold']:.2f}  "
                     f"{'ALERT' if f['alert'] else 'OK'}")
    return lines


def report_png(summary: dict, model_baseline: dict | None, previous: dict | None = None) -> bytes:
    """report.png: label shares today beside training (and the previous night), and the confidence histograms."""
    import io

    from model.evaluate import pyplot

    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.28 * len(summary["labels"]) + 1.5)),
                                         gridspec_kw={"width_ratios": [3, 2]})
    series = {"today": {n: f["share"] for n, f in summary["labels"].items()}}
    if model_baseline:
        series["training"] = model_baseline["label_shares"]
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
    centres = [(i + 0.5) / bins.CONFIDENCE_BINS for i in range(bins.CONFIDENCE_BINS)]
    width = 0.4 / bins.CONFIDENCE_BINS
    right.bar([c - width / 2 for c in centres], bins.shares(summary["confidence_histogram"]), width, label="today")
    if model_baseline:
        right.bar([c + width / 2 for c in centres], model_baseline["confidence_histogram"], width,
                  label="test split at training")
    right.set_xlabel("confidence")
    right.set_ylabel("share of predictions")
    right.set_title("Confidence")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
