"""How often reviewers corrected the model, where, and how far the reviewers agree: the review loop's figures,
from the answers alone (`model.corrections`), for `complaints review report` and the nightly summary.

- **correction rate** per category the model gave and per model version: the share of
  reviewed rows whose decided category is not the model's label, with a 95% Wilson
  interval (the rows are counts of yes/no, often few per category);
- **accuracy on reviewed rows**: one minus the overall correction rate, with its
  interval. The reviewed rows are the model's least certain ones, so this is a floor on
  the night's accuracy, not an estimate of it;
- **agreement**: Cohen's kappa for each pair of annotators who answered at least two of
  the same complaints (agreement beyond what their own category frequencies give by
  chance); and every complaint where the annotators disagree, ties first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import pandas as pd

from model.corrections import kept, resolved

Z95 = 1.959964


@dataclass(frozen=True)
class ReviewFigures:
    """The week's figures; each table a DataFrame, so the text, the plot and a notebook read the same values."""

    decided: pd.DataFrame
    by_category: pd.DataFrame
    by_version: pd.DataFrame
    kappas: pd.DataFrame
    disagreements: pd.DataFrame


def figures(answers: pd.DataFrame) -> ReviewFigures:
    """The figures over these answers (`model.corrections` columns)."""
    decided = resolved(answers)
    rated = decided.dropna(subset=["model_label"]).assign(
        corrected=lambda d: d["category"] != d["model_label"],
        model_version=lambda d: d["model_version"].fillna("(unknown)"))
    disagreements = decided[decided["agreement"] < 1].assign(tie=lambda d: d["decided_by"] == "tie")
    return ReviewFigures(
        decided=decided, by_category=_rates(rated, "model_label"), by_version=_rates(rated, "model_version"),
        kappas=_kappas(kept(answers)),
        disagreements=disagreements.sort_values(["tie", "agreement", "id"], ascending=[False, True, True]))


def accuracy(f: ReviewFigures) -> tuple[int, int, float, float]:
    """(right, reviewed, low, high): the model's label kept by the reviewers, with its 95% Wilson interval."""
    reviewed = int(f.by_version["reviewed"].sum())
    right = reviewed - int(f.by_version["corrected"].sum())
    return (right, reviewed, *wilson(right, reviewed))


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n: sound for small n and for rates near 0 or 1, where the
    normal approximation gives intervals outside [0, 1]."""
    if n == 0:
        return (math.nan, math.nan)
    p, spread = k / n, z * z / n
    centre = (p + spread / 2) / (1 + spread)
    half = z * math.sqrt(p * (1 - p) / n + spread / (4 * n)) / (1 + spread)
    return (max(0.0, centre - half), min(1.0, centre + half))


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two annotators' answers to the same complaints; None where chance agreement is total
    (both always gave one and the same category), which makes kappa undefined."""
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    categories = set(first) | set(second)
    chance = sum((first.count(c) / n) * (second.count(c) / n) for c in categories)
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def _rates(rated: pd.DataFrame, by: str) -> pd.DataFrame:
    grouped = rated.groupby(by)["corrected"].agg(reviewed="count", corrected="sum").reset_index()
    bounds = [wilson(int(c), int(n)) for c, n in zip(grouped["corrected"], grouped["reviewed"], strict=True)]
    return grouped.assign(rate=grouped["corrected"] / grouped["reviewed"], low=[b[0] for b in bounds],
                          high=[b[1] for b in bounds]).sort_values(["rate", by], ascending=[False, True])


def _kappas(latest: pd.DataFrame) -> pd.DataFrame:
    named = latest[latest["annotator"] != ""].assign(key=lambda d: d["night"].fillna("") + "\0" + d["id"])
    answers = {who: dict(zip(group["key"], group["category"], strict=True))
               for who, group in named.groupby("annotator")}
    rows = []
    for a, b in combinations(sorted(answers), 2):
        shared = sorted(set(answers[a]) & set(answers[b]))
        if len(shared) >= 2:
            first, second = [answers[a][k] for k in shared], [answers[b][k] for k in shared]
            rows.append({"annotator_a": a, "annotator_b": b, "shared": len(shared),
                         "agreement": sum(x == y for x, y in zip(first, second, strict=True)) / len(shared),
                         "kappa": cohen_kappa(first, second)})
    return pd.DataFrame(rows, columns=["annotator_a", "annotator_b", "shared", "agreement", "kappa"])


def section(f: ReviewFigures, limit: int = 5) -> dict:
    """The figures as the nightly summary keeps them: the headline numbers, the versions, the categories the
    reviewers corrected most."""
    right, reviewed, low, high = accuracy(f)
    return {
        "reviewed": len(f.decided), "with_model_label": reviewed,
        "accuracy_on_reviewed": round(right / reviewed, 4) if reviewed else None,
        "accuracy_ci95": [round(low, 4), round(high, 4)] if reviewed else None,
        "correction_rate_by_version": {str(r.model_version): {"reviewed": int(r.reviewed), "rate": round(r.rate, 4)}
                                       for r in f.by_version.itertuples()},
        "most_corrected_categories": {str(r.model_label): {"reviewed": int(r.reviewed), "rate": round(r.rate, 4)}
                                      for r in f.by_category.head(limit).itertuples()},
        "disagreements": len(f.disagreements),
        "ties": int(f.disagreements["tie"].sum()) if len(f.disagreements) else 0,
        "kappa": {f"{r.annotator_a} / {r.annotator_b}": None if r.kappa is None or pd.isna(r.kappa)
                  else round(r.kappa, 4) for r in f.kappas.itertuples()},
    }
