"""The review loop's numbers as `complaints review report` shows them: a table, a plot, the disagreements as CSV.

The figures themselves (correction rates with Wilson intervals, accuracy on reviewed
rows, Cohen's kappa, disagreements) are `model.review_figures`, shared with the nightly
summary's `review` section.
"""

from __future__ import annotations

import pandas as pd

from model import review_figures
from model.corrections import kept
from model.review_figures import ReviewFigures, accuracy
from pipelines.app.uploads import defused
from pipelines.plumbing.night import normalised


def figures(answers: pd.DataFrame, nights: list[str] | None = None) -> ReviewFigures:
    """The figures over every answer, or only those from `nights` (each a night's --output, spelt any way)."""
    if nights:
        answers = answers[answers["night"].isin({normalised(n) for n in nights})]
    return review_figures.figures(answers)


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
