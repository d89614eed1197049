"""The review loop's numbers, read each week: how often reviewers corrected the model, where, and how far the
reviewers agree with each other.

From the answers file alone (`complaints review import`'s Parquet, which keeps the
model's label, confidence and version beside every answer), decided by the same rule
as training (`model.corrections.resolved`):

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
from pipelines.app.uploads import defused
from pipelines.plumbing.night import normalised

Z95 = 1.959964


@dataclass(frozen=True)
class ReviewFigures:
    """The week's figures; each table a DataFrame, so the text, the plot and a notebook read the same values."""

    decided: pd.DataFrame
    by_category: pd.DataFrame
    by_version: pd.DataFrame
    kappas: pd.DataFrame
    disagreements: pd.DataFrame
    without_model: int  # reviewed rows from files that did not keep the model's label (left out of the rates)


def figures(answers: pd.DataFrame, nights: list[str] | None = None) -> ReviewFigures:
    """The figures over every answer, or only those from `nights` (each a night's --output, spelt any way)."""
    if nights:
        answers = answers[answers["night"].isin({normalised(n) for n in nights})]
    decided = resolved(answers)
    rated = decided.dropna(subset=["model_label"]).assign(
        corrected=lambda d: d["category"] != d["model_label"],
        model_version=lambda d: d["model_version"].fillna("(unknown)"))
    disagreements = decided[decided["agreement"] < 1].assign(tie=lambda d: d["decided_by"] == "tie")
    return ReviewFigures(
        decided=decided, by_category=_rates(rated, "model_label"), by_version=_rates(rated, "model_version"),
        kappas=_kappas(kept(answers)),
        disagreements=disagreements.sort_values(["tie", "agreement", "id"], ascending=[False, True, True]),
        without_model=len(decided) - len(rated))


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


def text(f: ReviewFigures, limit: int = 10) -> str:
    """The figures as the command prints them."""
    right, reviewed, low, high = accuracy(f)
    lines = [f"reviewed complaints: {len(f.decided):,} ({reviewed:,} with the model's label kept beside the answer)"]
    if reviewed:
        lines.append(f"model accuracy on reviewed rows: {right / reviewed:.3f} (95% CI {low:.3f}-{high:.3f}; the "
                     "least certain rows, so a floor on the night's accuracy)")
    for title, table, by in (("per category the model gave", f.by_category, "model_label"),
                             ("per model version", f.by_version, "model_version")):
        lines.append(f"correction rate {title}:")
        lines += [f"  {row[by]:<32} {row['corrected']:>5,}/{row['reviewed']:<5,} {row['rate']:.3f} "
                  f"({row['low']:.3f}-{row['high']:.3f})" for _, row in table.iterrows()]
    lines.append("annotator agreement (Cohen's kappa, pairs with 2+ shared complaints):")
    lines += [f"  {r.annotator_a} / {r.annotator_b}: kappa {_shown(r.kappa)}, agree {r.agreement:.3f} on "
              f"{r.shared:,}" for r in f.kappas.itertuples()] or ["  (no two annotators share two complaints)"]
    ties = int(f.disagreements["tie"].sum()) if len(f.disagreements) else 0
    lines.append(f"disagreements: {len(f.disagreements):,} complaint(s), {ties:,} tie(s) (decided by the newest "
                 "answer; a ground_truth answer settles one)")
    lines += [f"  {r.id} ({r.night or 'no night'}): {r.decided_by}, {r.category} with agreement {r.agreement:.2f}"
              for r in f.disagreements.head(limit).itertuples()]
    return "\n".join(lines)


def _shown(kappa: float | None) -> str:
    return "n/a (one category only)" if kappa is None or pd.isna(kappa) else f"{kappa:.3f}"


def write_disagreements(f: ReviewFigures, path: str, answers: pd.DataFrame) -> None:
    """Every disagreement with each annotator's answer, as CSV for a lead (spreadsheet-safe)."""
    latest = kept(answers)
    given = latest.groupby([latest["night"].fillna(""), "id"]).apply(
        lambda g: "; ".join(f"{a or '(unnamed)'}: {c}" for a, c in zip(g["annotator"], g["category"], strict=True)),
        include_groups=False)
    rows = f.disagreements.assign(answers=[given.get((n or "", i), "") for n, i in
                                           zip(f.disagreements["night"], f.disagreements["id"], strict=True)])
    columns = ["id", "night", "category", "decided_by", "agreement", "annotators", "answers", "model_label"]
    rows[columns].map(lambda v: defused(v) if isinstance(v, str) else v).to_csv(path, index=False)


def plot(f: ReviewFigures, path: str) -> None:
    """Correction rate per category and per model version, each with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [(f.by_category, "model_label", "per category the model gave"),
              (f.by_version, "model_version", "per model version")]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3, 0.3 * len(f.by_category) + 1.5)))
    for ax, (table, by, title) in zip(axes, tables, strict=True):
        rates = table["rate"].to_numpy()
        ax.barh(table[by].astype(str), rates, xerr=[rates - table["low"], table["high"] - rates], color="#c44e52")
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("correction rate (share of reviewed rows relabelled)")
        ax.set_title(f"Correction rate {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
