"""The review loop's commands: a night's uncertain rows out to reviewers, their answers back, and the week's
numbers (`complaints review export | import | report`)."""

from __future__ import annotations

import click

from model.errors import UserError
from pipelines.app.command import Group
from pipelines.app.config_options import options
from worker.config import WorkerConfig


@click.group(cls=Group)
def review() -> None:
    """The review loop: a night's uncertain rows out to reviewers (Label Studio or CSV), corrections back."""


@review.command("export")
@click.option("--output", required=True, help="A committed night (the nightly job's --output).")
@click.option("--to", "to", type=click.Path(dir_okay=False),
              help="FILE.json (Label Studio tasks; the labelling config goes beside it) or FILE.csv.")
@click.option("--label-studio", "studio", metavar="URL", help="Push the tasks to this Label Studio instead (with "
              "--project; the token from $LABEL_STUDIO_API_KEY): only tasks the project does not hold yet.")
@click.option("--project", help="The Label Studio project's title (created with the labelling config if new).")
@options(WorkerConfig, "model_dir", "registry_uri")
@click.option("--all", "everything", is_flag=True, help="Every row, not only those that need review.")
@click.option("--label", help="Only the rows given this label.")
@click.option("--limit", type=click.IntRange(1), help="At most this many rows, a seeded random sample.")
@click.option("--seed", default=0, show_default=True, help="The sample's seed.")
def review_export(output: str, to: str | None, studio: str | None, project: str | None, model_dir: str,
                  everything: bool, label: str | None, limit: int | None, seed: int) -> None:
    """Write a night's needs_review rows (or --all, --label X) with their text, label, confidence, top-k and
    explanation as Label Studio tasks or CSV, or push them to a live Label Studio. --model is the model that
    labelled the night (its categories)."""
    from model import artifact
    from pipelines.app.review import Selection, chosen_records, export

    _one_place(to, studio, project, "--to FILE")
    labels, metadata = artifact.read_metadata(model_dir)
    selection = Selection(everything, label, limit, seed)
    if to:
        click.echo(export(output, to, labels, metadata["model_version"], selection))
        return
    from pipelines.app.label_studio_api import push_night

    records = chosen_records(output, metadata["model_version"], selection)
    click.echo(push_night(studio, project, records, labels) + f" from {output} ({selection.describe()})")


def _one_place(path: str | None, studio: str | None, project: str | None, path_option: str) -> None:
    """A file, or a live Label Studio with its project: exactly one."""
    if bool(path) == bool(studio):
        raise UserError(f"give {path_option} or --label-studio URL --project NAME (one of them)")
    if studio and not project:
        raise UserError("--label-studio needs --project NAME (the project's title)")


@review.command("import")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False),
              help="Label Studio's JSON, JSON-min or CSV export, or the review CSV filled in.")
@click.option("--label-studio", "studio", metavar="URL", help="Pull the answers from this Label Studio instead "
              "(with --project; the token from $LABEL_STUDIO_API_KEY).")
@click.option("--project", help="The Label Studio project's title.")
@click.option("--out", "target", required=True, type=click.Path(dir_okay=False),
              help="The answers Parquet: merged into when it exists; train --corrections, review report.")
@options(WorkerConfig, "model_dir", "registry_uri")
@click.option("--rename", multiple=True, metavar="OLD=NEW", help="A category renamed since the export.")
@click.option("--skip-unknown", is_flag=True, help="Leave out answers whose category the model does not know "
              "(each is still listed).")
def review_import(source: str | None, studio: str | None, project: str | None, target: str, model_dir: str,
                  rename: tuple[str, ...], skip_unknown: bool) -> None:
    """Read reviewers' answers (each with its annotator and time), check each category against --model's, and
    merge them into --out: per complaint and annotator the newest answer stands, whatever the import order."""
    from model import artifact
    from pipelines.app.review_import import import_corrections, merge_answers

    _one_place(source, studio, project, "--from FILE")
    pairs = [r.split("=", 1) for r in rename]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise UserError("--rename takes OLD=NEW, e.g. --rename 'Kargo=Kargo ve Teslimat'")
    labels, _ = artifact.read_metadata(model_dir)
    if source:
        click.echo(import_corrections(source, target, labels, dict(pairs), skip_unknown))
        return
    from pipelines.app.label_studio_api import pulled

    found, counts = pulled(studio, project)
    click.echo(merge_answers(found, counts, f"project {project!r} at {studio}", target, labels, dict(pairs),
                             skip_unknown))


@review.command("report")
@click.option("--corrections", required=True, help="The answers file (`review import`'s --out), or a glob of them.")
@click.option("--output", "nights", multiple=True, help="Only answers from this night (its --output); repeatable.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the correction rates as a PNG here.")
@click.option("--disagreements", type=click.Path(dir_okay=False),
              help="Write every complaint the annotators disagree on, with each answer, as CSV here.")
def review_report_command(corrections: str, nights: tuple[str, ...], plot: str | None,
                          disagreements: str | None) -> None:
    """How often reviewers corrected the model (per category and model version), its accuracy on reviewed rows,
    annotator agreement (Cohen's kappa) and the disagreements, from the answers alone."""
    from model.data import read_answers
    from pipelines.app import review_report

    answers = read_answers(corrections)
    figures = review_report.figures(answers, list(nights))
    if figures.decided.empty:
        raise UserError(f"no reviewed complaint in {corrections}" + (f" from {', '.join(nights)}" if nights else "")
                        + ": import answers with `complaints review import` first, or check --output")
    click.echo(review_report.text(figures))
    if plot:
        review_report.plot(figures, plot)
        click.echo(f"plot: {plot}")
    if disagreements:
        review_report.write_disagreements(figures, disagreements, answers)
        click.echo(f"disagreements: {disagreements}")
