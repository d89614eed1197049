"""What a night's run works out from the config the user typed: decided once, on the launcher, as one frozen value.

The config (`BatchConfig`) stays what the user typed. Everything the run derives from it
is decided here, in the pre-flight, before the output is touched: the output spelt one
way and the night's date (`pipelines.plumbing.night`), the model's metadata (the model
loaded once), the model the workers serve and whether its core is compiled, the input
files and their rows (or the `bq://` read session), the kept columns' types, and
whether progress is shown. The job, the pipeline's construction and the sinks read
these facts; none of them changes the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import pyarrow as pa

from model import artifact
from model.corrections import of_night, resolved
from model.data import read_answers
from model.errors import UserError
from model.review_figures import figures, section
from pipelines.config import BatchConfig
from pipelines.nightly.bigquery_reading import TableSession, is_bigquery, open_table
from pipelines.nightly.reading import Expected, InputSpec, inspect_inputs, plain_type
from pipelines.options import is_local, template_only
from pipelines.plumbing import night
from pipelines.served_model import challenger, served_from
from worker.config import WorkerConfig
from worker.precision_choice import PrecisionSetting, candidates


@dataclass(frozen=True)
class RunFacts:
    """The run's facts (module docstring); `expected` is None with --skip-validation and for template builds."""

    output: str  # normalised: one spelling in both stores and the journal
    night: str  # the night's date, YYYY-MM-DD
    night_from: str  # where the date came from: 'given', 'output' or 'started'
    metadata: dict  # the model's, read once
    worker: WorkerConfig  # the model the workers serve, as they will read it
    passthrough_fields: tuple[pa.Field, ...]  # the kept columns with their types
    inputs: list[dict]  # for the summary: path, and size and rows when known
    total_rows: int | None
    expected: list[Expected] | TableSession | None  # exactly these files (or this table session) are read
    skipped: dict[str, int]  # by the pre-flight; with --skip-validation the reader counts them
    progress: bool
    building: bool  # a template build: nothing is read or written now
    review: dict | None = None  # --corrections: the review loop's figures so far (model.review_figures.section)
    shadow: WorkerConfig | None = None  # --shadow: the challenger, as the workers serve it
    shadow_note: dict | None = None  # what the summary's `shadow` starts from (`pipelines.served_model.challenger`)
    reviewed: pd.DataFrame | None = None  # --corrections: this night's reviewed rows (`id`, `category`)


def decide(config: BatchConfig, options) -> RunFacts:
    """The pre-flight: every check that can fail in one line before any work, and every fact the run needs."""
    output = night.normalised(config.output)
    date, night_from = night.of_run(output, config.night, needed_by="--bigquery-table" if config.bigquery_table
                                    else None)
    building = template_only(options)
    if is_bigquery(config.input_pattern) and (building or not config.validate):
        raise UserError("--input bq:// is read through a session the pre-flight opens on this machine: run it "
                        "without --skip-validation and --template_location/--dry_run")
    if building and config.bigquery_table:
        raise UserError("--bigquery-table loads the night when this command commits it, which a template build "
                        "never does: run the job without --template_location/--dry_run, or load the committed "
                        "files yourself (docs/bigquery.md)")
    found = preflight(config, output) if config.validate else None
    if found:
        files, skipped, metadata, session, fields = found
        total_rows = sum(f.rows for f in files)
        inputs = [{"path": f.path, "size_bytes": f.size_bytes, "rows": f.rows} for f in files]
        expected = None if building else session or [Expected(f.path, f.size_bytes, f.rows) for f in files]
    else:
        _, metadata = artifact.read_metadata(config.worker.model_dir)
        total_rows, inputs, expected, skipped, fields = None, [{"path": config.input_pattern}], None, {}, ()
    candidates(PrecisionSetting.of(config.worker), metadata, config.worker.model_dir)  # a refusal: one line, now
    worker = served_from(config.worker, metadata, options)
    if total_rows is not None and total_rows < config.xla_min_rows:
        worker = replace(worker, xla=False)  # a small archive: the compile would cost more than it saves
    shadow, shadow_note = challenger(worker, config.shadow, metadata["model_version"], options)  # batched alike
    review, reviewed = _reviews(config.corrections, output)
    return RunFacts(output, date, night_from, metadata, worker, fields, inputs, total_rows, expected, skipped,
                    config.progress and is_local(options), building, review, shadow, shadow_note, reviewed)


def _reviews(corrections: str | None, output: str) -> tuple[dict | None, pd.DataFrame | None]:
    """(the review figures so far; the decided category of each of this night's reviewed rows, for `--shadow`)."""
    if not corrections:
        return None, None
    answers = read_answers(corrections)
    decided = resolved(answers)
    return section(figures(answers)), of_night(decided, output)


def preflight(config: BatchConfig, output: str) -> tuple[list, dict[str, int], dict, TableSession | None, tuple]:
    """Check the model and the inputs before any work: (files, skipped, metadata, bq:// session, kept fields).

    The model is loaded here once, so a directory that does not load fails in one
    line before any input is read; the workers load their own copy. A `bq://` input
    is checked and opened at one snapshot (`pipelines.nightly.bigquery_reading`).
    """
    metadata = artifact.load(config.worker.model_dir).metadata
    required = [config.text_column, *config.keep_columns]
    session = None
    if is_bigquery(config.input_pattern):
        table, session = open_table(config.input_pattern, required, config.id_column, config.text_column,
                                    config.derive_missing_id)
        files, skipped = [table], {}
    else:
        if not config.derive_missing_id:
            required.append(config.id_column)
        files, skipped = inspect_inputs(InputSpec.of(config.input_pattern, output), required,
                                        config.id_column, config.text_column)
    fields = tuple(passthrough_field(files, name) for name in config.keep_columns if name not in ("id", "text"))
    return files, skipped, metadata, session, fields


def passthrough_field(files: list, name: str) -> pa.Field:
    """A kept column's type in the predictions: the one type every file agrees on.

    Dictionary encoding counts as its values' type, Arrow's view layouts as the plain
    ones, and an all-null column agrees with any type; files that disagree otherwise
    fail here, in one line, rather than in the writer after the whole archive has been
    labelled.
    """
    chosen = None
    for f in files:
        field = f.schema.field(name)
        kind = plain_type(field.type.value_type if pa.types.is_dictionary(field.type) else field.type)
        if pa.types.is_null(kind):
            continue
        if chosen is None:
            chosen = (f.path, kind)
        elif kind != chosen[1]:
            raise UserError(f"kept column {name!r} is {kind} in {f.path} but {chosen[1]} in {chosen[0]}: make the "
                            "files agree, or leave it out of --keep-columns")
    return pa.field(name, chosen[1] if chosen else pa.null())
