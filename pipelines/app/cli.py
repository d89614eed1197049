"""The `complaints` command line: thin click wrappers, no logic of their own."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from model.config import ArchitectureConfig, TrainConfig
from model.errors import UserError
from pipelines.app import cli_outputs, cli_review
from pipelines.app.command import Group
from pipelines.app.config_options import build, options
from pipelines.app.console import quiet_beam, show_worker_log
from pipelines.app.page_limits import PageLimits
from pipelines.config import BatchConfig, StreamConfig
from pipelines.plumbing.lease_settings import LeaseSettings
from worker.config import WorkerConfig
from worker.defaults import DEFAULT_NIGHTLY_BATCH_SIZE, LIVE_MAX_BATCH_DURATION_SECS, XLA_MIN_ROWS

_TRAINING = TrainConfig()  # the defaults, written once in model/config.py
_LEASE = LeaseSettings()  # the live job's local read: defaults written once in pipelines/plumbing/lease_settings.py


@click.group(cls=Group)
@click.option("--verbose", is_flag=True, help="Show Apache Beam's own log output.")
def cli(verbose: bool) -> None:
    """Train a complaint classifier and label archives (Parquet) or live streams (Pub/Sub)."""
    quiet_beam(verbose)


@cli.command("sample-data")
@click.option("--rows", default=5000, show_default=True, type=click.IntRange(1))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--unlabelled", is_flag=True, help="Leave out the category column.")
def sample_data(rows: int, out_path: str, seed: int, unlabelled: bool) -> None:
    """Write generated Turkish complaints over the 32 reference categories as Parquet."""
    from model.sample import generate
    from pipelines.app.files import write_frame

    write_frame(generate(rows, seed=seed, labelled=not unlabelled), out_path)
    click.echo(f"wrote {rows} complaints to {out_path}")


def _data_options(f):
    f = click.option("--label-column", default="category", show_default=True)(f)
    f = click.option("--text-column", default="text", show_default=True)(f)
    return click.option("--data", required=True, help="Parquet or CSV file, or a glob of them.")(f)


@cli.command()
@_data_options
@options(ArchitectureConfig, "sequence_length", "locale")
def describe(data: str, text_column: str, label_column: str, sequence_length: int, locale: str) -> None:
    """Class distribution and text lengths: how much of each text the model sees."""
    from pipelines.app.reports import describe_data

    click.echo(describe_data(data, text_column, label_column, sequence_length, locale))


@cli.command()
@_data_options
@click.option("--out", "out_dir", required=True, help="Model directory to write.")
@options(TrainConfig, "epochs", "batch_size", "validation_split", "test_split", "seed")
@click.option("--max-rows", type=click.IntRange(1), help="Train on a seeded random sample of this many rows.")
@options(ArchitectureConfig, "locale", "max_tokens", "sequence_length", "embedding_dim", "lstm_units", "dense_units")
@options(TrainConfig, "patience", "learning_rate", "architecture", "calibrate")
@click.option("--refit/--no-refit", default=True, show_default=True,
              help="After selection and calibration, refit the chosen model on more rows (--final-fit).")
@options(TrainConfig, "final_fit")
@click.option("--quiet", is_flag=True, help="No progress (phases, heartbeats, Keras' bars): for schedulers.")
@click.option("--corrections", help="Reviewers' corrections (`complaints review import`'s Parquet, or a glob): a "
              "corrected id's row is relabelled, a new one added; --data needs an id column.")
@click.option("--register", "register_as", metavar="NAME", help="Log the run to the MLflow registry and register the "
              "model as a new version of NAME (needs the registry extra; docs/registry.md).")
@click.option("--alias", help="With --register: point this alias (e.g. challenger) at the new version.")
@options(WorkerConfig, "registry_uri")
def train(data: str, text_column: str, label_column: str, out_dir: str, max_rows: int | None, refit: bool,
          quiet: bool, **values) -> None:
    """Train a classifier (BiLSTM, linear or the better of both) and export the end-to-end model directory."""
    from pipelines.app.reports import train_and_report

    register_as, alias, registry_uri, corrections = (
        values.pop(name) for name in ("register_as", "alias", "registry_uri", "corrections"))
    network = build(ArchitectureConfig, values)
    config = build(TrainConfig, values, verbose=0 if quiet else _TRAINING.verbose)
    if not refit:
        config = dataclasses.replace(config, final_fit="train")
    if alias and not register_as:
        raise UserError("--alias names an alias of the registered model: give --register NAME too")
    if register_as:
        from model.registration import check_registration

        registry_uri = check_registration(register_as, alias, registry_uri)  # before the hours of training
    click.echo(train_and_report(data, text_column, label_column, out_dir, network, config, max_rows, corrections))
    if register_as:
        from pipelines.app.registered import register_trained

        training = {"data": data, "corrections": corrections, "text_column": text_column,
                    "label_column": label_column, "max_rows": max_rows, **dataclasses.asdict(network),
                    **dataclasses.asdict(config)}
        click.echo(register_trained(out_dir, register_as, alias, registry_uri, training))


@cli.command()
@options(WorkerConfig, "model_dir", "registry_uri")
@_data_options
@click.option("--report-dir", default="evaluation", show_default=True,
              help="Where to write the report (never into the model directory).")
def evaluate(model_dir: str, data: str, text_column: str, label_column: str, report_dir: str) -> None:
    """Score a model on labelled data: report, confusion matrix and metrics.json."""
    from pipelines.app.reports import evaluate_model

    click.echo(evaluate_model(model_dir, data, text_column, label_column, report_dir))


@cli.command("precision")
@options(WorkerConfig, "model_dir", "registry_uri")
@_data_options
@options(WorkerConfig, "review_threshold")  # the rule's threshold; a job's own is checked when it loads
@click.option("--max-rows", default=20_000, show_default=True, type=click.IntRange(100),
              help="Measure on a seeded sample of at most this many rows.")
def precision_command(model_dir: str, registry_uri: str | None, data: str, text_column: str, label_column: str,
                      review_threshold: float, max_rows: int) -> None:
    """Measure each lower precision against FP32 on labelled rows the model was not trained on, and record the
    agreement in the model directory's metadata.json (what --precision auto and bf16 are allowed by)."""
    from pipelines.app.reports import record_precisions

    click.echo(record_precisions(model_dir, data, text_column, label_column, review_threshold, max_rows,
                                 registry_uri))


@cli.command()
@click.option("--model", "models", multiple=True, help="Give it twice: A (e.g. the serving model), "
              "then B (the candidate); a directory or models:/NAME@ALIAS (or /VERSION).")
@options(WorkerConfig, "registry_uri")
@click.option("--data", help="Parquet or CSV file, or a glob of them (with --model).")
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="category", show_default=True)
@click.option("--night", help="Instead of --model and --data: a night labelled with --shadow (its --output), "
              "champion (A) against challenger (B) from its own files.")
@click.option("--corrections", help="With --night: review answers (`review import`'s --out); the night's reviewed "
              "rows are compared against them too.")
@click.option("--report-dir", help="Where compare.json and compare.png go (default: ./compare).")
def compare(models: tuple[str, ...], data: str | None, text_column: str, label_column: str, night: str | None,
            corrections: str | None, report_dir: str | None) -> None:
    """Two models on the same complaints: with labels, which is better and by more than noise; without,
    how many labels would change, and to what. Exits 0 either way: the decision is yours."""
    from pipelines.app.compare import run_compare, run_night_compare

    if night:
        if models or data:
            raise UserError("--night compares the night's own champion and challenger: leave out --model and --data")
        click.echo(run_night_compare(night, corrections, report_dir)[1])
        return
    if corrections:
        raise UserError("--corrections is read with --night (a shadowed night's reviewed rows); with --model, give "
                        "the labelled rows as --data")
    if len(models) != 2 or not data:
        raise UserError(f"compare takes exactly two models (--model A --model B) and --data, or --night OUTPUT; got "
                        f"{len(models)} models{'' if data else ' and no --data'}")
    click.echo(run_compare(models[0], models[1], data, text_column, label_column, report_dir)[1])


@cli.command()
@options(WorkerConfig, "model_dir", "registry_uri", "top_k", "review_threshold", "precision", "force_precision")
@click.option("--json", "as_json", is_flag=True, help="One JSON prediction per line.")
@options(WorkerConfig, "explain")  # predict explains every text it is given
@click.argument("texts", nargs=-1)
def predict(model_dir: str, top_k: int, review_threshold: float, precision: str, force_precision: bool,
            as_json: bool, explain: int, texts: tuple[str, ...]) -> None:
    """Label TEXTS (or lines on stdin) as the jobs would: label, confidence and top-k, or the dead-letter
    reason. Exits 1 only when every text was rejected."""
    from pipelines.app.predictor import Predictor, because

    lines = list(texts) or [line.rstrip("\n") for line in sys.stdin]
    if not lines:
        raise UserError("no text to classify: pass texts as arguments or one per line on stdin")
    verdicts = Predictor(model_dir, top_k, review_threshold, precision=precision,
                         force_precision=force_precision, explain=explain).predict(lines)
    for v in verdicts:
        if as_json:
            click.echo(json.dumps(v.as_json(), ensure_ascii=False))
        elif v.rejected:
            click.echo(f"dead letter: {v.record['reason']} ({v.record['detail']})  {v.text[:60]}")
        else:
            alternatives = ", ".join(f"{name} {p:.2f}" for name, p in v.top[1:])
            click.echo(f"{v.label} ({v.confidence:.2f})  [{alternatives}]  {v.text[:60]}")
            if explain:
                click.echo(f"  because: {because(v.explanation) or '(no single word carries it)'}")
    if all(v.rejected for v in verdicts):
        sys.exit(1)


_BEAM_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}
_XLA = click.option(
    "--xla", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]),
    help="Run the BiLSTM's numeric core as XLA programs (about 1.1-1.3x faster, one compile of about a second at "
    f"start); auto: on for the live job and archives of {XLA_MIN_ROWS:,}+ rows.")


@cli.command(context_settings=_BEAM_ARGS)
@options(WorkerConfig, "model_dir", "registry_uri")
@options(BatchConfig, "input_pattern", "output", "id_column", "text_column")
@click.option("--keep-columns", default="", help="Comma-separated input columns copied to the predictions.")
@options(WorkerConfig, "top_k", "review_threshold", "min_batch_size", "max_batch_size",
         min_batch_size=DEFAULT_NIGHTLY_BATCH_SIZE, max_batch_size=DEFAULT_NIGHTLY_BATCH_SIZE)
@_XLA
@options(WorkerConfig, "precision", "force_precision", "explain", "explain_all")
@options(BatchConfig, "progress", "drift_threshold", "compare_to", "corrections", "shadow", "night", "bigquery_table",
         "bigquery_deadline_secs", "bigquery_busy_wait_secs", "bigquery_scratch_dataset", "bigquery_dead_letter_text")
@click.option("--fail-on-drift", is_flag=True,
              help="Exit with code 3 when drift alerts, 4 when the check failed (after committing the output).")
@click.option("--skip-validation", is_flag=True, help="Do not read input footers before starting (gs:// without "
              "local credentials).")
@options(BatchConfig, "lock_stale_secs")
@click.pass_context
def label(ctx, keep_columns: str, xla: str, fail_on_drift: bool, skip_validation: bool, **values) -> None:
    """Label a Parquet archive. Beam options (--runner, --project, ...) may follow."""
    from pipelines.nightly.job import run
    from pipelines.nightly.summary import render

    _explain_given(values)
    if skip_validation and keep_columns.strip():
        raise UserError("--keep-columns takes each kept column's type from the input footers, which "
                        "--skip-validation does not read: drop one of the two (without it the columns were left "
                        "out of the output)")
    if values["night"]:
        from pipelines.plumbing.night import parsed

        values["night"] = parsed(values["night"])  # not a date: one line before the model loads
    if values["bigquery_table"]:
        from pipelines.plumbing.bigquery import TableRef

        TableRef.parse(values["bigquery_table"])  # a malformed name: one line before the model loads

    worker = build(WorkerConfig, values, xla=xla != "off")
    config = build(
        BatchConfig, values, worker=worker,
        keep_columns=tuple(c.strip() for c in keep_columns.split(",") if c.strip()),
        derive_missing_id=ctx.get_parameter_source("id_column") == click.core.ParameterSource.DEFAULT,
        validate=not skip_validation, xla_min_rows=XLA_MIN_ROWS if xla == "auto" else 0,
    )
    summary = run(config, list(ctx.args))
    if "template_location" in summary:
        click.echo(f"Dataflow job built, not run: template at {summary['template_location']}")
    else:
        click.echo(render(summary))
        if fail_on_drift and summary["drift"]["alert"]:
            sys.exit(3)  # the output is committed: the labels are good data; the code is for the scheduler
        if fail_on_drift and summary["drift"].get("checked") is False:
            sys.exit(4)  # committed too, but nobody checked it for drift


def _explain_given(values: dict) -> None:
    if values["explain_all"] and not values["explain"]:
        raise UserError("--explain-all says which rows to explain: give --explain K too (the words per row)")


@cli.command(context_settings=_BEAM_ARGS)
@options(WorkerConfig, "model_dir", "registry_uri")
@options(StreamConfig, "subscription", "output_topic", "dead_letter_topic", "archive_output", "window_seconds",
         "shadow")
@options(WorkerConfig, "top_k", "review_threshold", "min_batch_size", "max_batch_size", "max_batch_duration_secs",
         max_batch_duration_secs=LIVE_MAX_BATCH_DURATION_SECS)
@_XLA
@options(WorkerConfig, "precision", "force_precision", "explain", "explain_all")
@options(LeaseSettings, "ack_deadline_secs", "max_outstanding_messages")
@click.option("--max-outstanding-mb", default=_LEASE.max_outstanding_bytes // 2**20, show_default=True,
              type=click.IntRange(11), help="Local read: their bytes, at most (a single message may be 10 MB).")
@options(WorkerConfig, "watch_models", "watch_interval_secs")
@options(LeaseSettings, "max_lease_secs")
@options(StreamConfig, "stop_timeout_secs", "metrics_port", "metrics_host", "unhealthy_after_secs", "read")
@click.pass_context
def stream(ctx, xla: str, max_outstanding_mb: int, registry_uri: str | None, **values) -> None:
    """Label complaints from Pub/Sub as they arrive; SIGINT/SIGTERM finish what is in flight. Beam options may
    follow."""
    from pipelines.live.job import run

    _explain_given(values)

    lease = build(LeaseSettings, values, max_outstanding_bytes=max_outstanding_mb * 2**20)
    worker = build(WorkerConfig, values, xla=xla != "off", registry_uri=registry_uri)  # the alias watch's
    config = build(StreamConfig, values, worker=worker, lease=lease)
    show_worker_log()
    click.echo(f"labelling {config.subscription} → {config.output_topic} (Ctrl-C stops)", err=True)
    outcome = run(config, list(ctx.args))
    if isinstance(outcome, dict) and "template_location" in outcome:
        click.echo(f"Dataflow job built, not run: template at {outcome['template_location']}")
    elif isinstance(outcome, dict):
        counters = " ".join(f"{name}={value}" for name, value in outcome["counters"].items())
        click.echo(f"stopped: {outcome['acknowledged']} messages labelled or dead-lettered and acknowledged "
                   f"({counters})", err=True)



@cli.command()
@options(WorkerConfig, "model_dir", "registry_uri")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --auth/--auth-file (or --insecure-no-auth).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@options(WorkerConfig, "top_k", "review_threshold")
@click.option("--auth", metavar="USER:PASSWORD", help="Ask for this login (Gradio's own sign-in page).")
@click.option("--auth-file", type=click.Path(dir_okay=False),
              help="Ask for a login from this file: one USER:PASSWORD per line (keeps passwords out of `ps`).")
@click.option("--insecure-no-auth", is_flag=True, help="Allow a non-loopback --host without a login.")
@options(PageLimits, "max_rows", "max_upload_mb", "max_text_chars", "queue_size", "download_minutes")
@options(WorkerConfig, "precision", "force_precision")
def serve(model_dir: str, host: str, port: int, auth: str | None, auth_file: str | None, insecure_no_auth: bool,
          **values) -> None:
    """A web page to try the model on single complaints or a small batch (needs the ui extra)."""
    from pipelines.app import web
    from pipelines.app.access import Access
    from pipelines.app.web import ServeConfig

    served = {name: values.pop(name) for name in ("top_k", "review_threshold", "precision", "force_precision")}
    web.serve(ServeConfig(model_dir=model_dir, port=port, **served, limits=PageLimits(**values),
                           access=Access(host=host, auth=auth, auth_file=auth_file, insecure_no_auth=insecure_no_auth)))


@cli.command("pubsub-demo")
@options(WorkerConfig, "model_dir", "registry_uri")
@click.option("--project", default="demo-project", show_default=True)
@click.option("--messages", default=20, show_default=True, type=click.IntRange(1))
def pubsub_demo(model_dir: str, project: str, messages: int) -> None:
    """Run the live job against a local Pub/Sub emulator and show what it labels."""
    from pipelines.app.pubsub_demo import run_pubsub_demo

    run_pubsub_demo(model_dir, project, messages, echo=click.echo)


@cli.command("register")
@click.argument("model_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="The registered model's name (a new version of it).")
@click.option("--alias", help="Point this alias (e.g. challenger) at the new version.")
@click.option("--data", help="The training data, for the run's dataset input (default: as the metadata recorded).")
@options(WorkerConfig, "registry_uri")
def register_command(model_dir: str, name: str, alias: str | None, data: str | None, registry_uri: str | None) -> None:
    """Register a model directory exported earlier (e.g. after a registration that failed) as a new version of
    NAME, as `train --register` would: an MLflow Model with its run, metrics, reports and lineage."""
    from model import artifact
    from pipelines.app.registered import register_trained

    artifact.load(model_dir)  # a broken directory is refused here, in one line, before anything is logged
    click.echo(register_trained(model_dir, name, alias, registry_uri, {"data": data, "registered_from": model_dir}))


@cli.command()
@click.argument("name")
@click.option("--version", required=True, type=click.IntRange(1), help="The registered version to point at.")
@click.option("--alias", required=True, help="The alias to move (e.g. champion).")
@options(WorkerConfig, "registry_uri")
def promote(name: str, version: int, alias: str, registry_uri: str | None) -> None:
    """Point ALIAS of the registered model NAME at --version: jobs that load models:/NAME@ALIAS serve it from
    their next start (the live job with --watch-models, within its interval). Moving it back is the rollback."""
    from model import registration
    from model.registry import SCHEME

    previous = registration.promote(name, str(version), alias, registry_uri)
    held = f"it was version {previous}" if previous else "it was free"
    click.echo(f"{SCHEME}{name}@{alias} → version {version} ({held})")


@cli.command()
@click.option("--workdir", default="demo", show_default=True, help="Where the demo writes its files.")
@click.option("--rows", default=20_000, show_default=True, type=click.IntRange(100))
def demo(workdir: str, rows: int) -> None:
    """Built-in defaults end to end: sample archive → small model → labelled archive → summary."""
    from pipelines.app.demo import run_demo

    run_demo(workdir, rows, echo=click.echo)


for _command in (cli_outputs.bigquery_schema, cli_outputs.unlock, cli_outputs.commit_command, cli_review.review):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="complaints")
