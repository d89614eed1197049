"""The commands an operator runs on a nightly output between runs: its BigQuery schema, a hold or a commit left by
a run that died (`unlock`), and a night kept staged while BigQuery was busy (`commit`)."""

from __future__ import annotations

import json

import click

from pipelines.app.command import Command
from pipelines.app.config_options import options
from pipelines.config import BatchConfig


@click.command("bigquery-schema", cls=Command)
@click.option("--for", "kind", type=click.Choice(["live", "nightly", "dead-letters"]), default="live",
              show_default=True, help="live: the table a Pub/Sub BigQuery subscription writes the output topic's "
              "messages to; nightly/dead-letters: the tables --bigquery-table creates (without kept columns).")
def bigquery_schema(kind: str) -> None:
    """Print a BigQuery table schema (JSON, as `bq mk --table` and Pub/Sub take it), derived from the record."""
    from pipelines.sinks.bigquery_schema import dead_letters, live_messages, predictions

    fields = {"live": live_messages, "nightly": predictions, "dead-letters": dead_letters}
    click.echo(json.dumps(fields[kind](), indent=2))


@click.command(cls=Command)
@click.option("--output", required=True, help="The nightly job's --output.")
@click.option("--force", is_flag=True, help="Remove the hold even if its run looks alive.")
def unlock(output: str, force: bool) -> None:
    """Remove the hold (`_LOCK`) a labelling run left on an output, then settle what runs that died left there: a
    commit killed part-way is finished or undone from its journal, their staging folders cleared. Local holds end
    with their process by themselves; this is for gs:// outputs, runs you know are gone, and a night whose
    BigQuery part was left unsettled."""
    from pipelines.nightly.recovery import recover_output
    from pipelines.plumbing import hold
    from pipelines.plumbing.night import normalised

    output = normalised(output)
    holder = hold.unlock(output, force)
    click.echo(f"removed the hold of {holder} on {output}" if holder else f"no hold on {output}")
    settled, cleared = recover_output(output)
    for line in settled:
        click.echo(line)
    if cleared:
        click.echo(f"cleared {len(cleared)} leftover folder{'s' if len(cleared) > 1 else ''} of runs that died")


@click.command("commit", cls=Command)
@click.option("--output", required=True, help="The nightly job's --output, whose night was kept staged.")
@options(BatchConfig, "lock_stale_secs")
def commit_command(output: str, lock_stale_secs: float) -> None:
    """Commit a labelled night that was kept staged because BigQuery was busy (`label --bigquery-table` said so):
    its files, its BigQuery swap and `_SUCCESS`, as the run would have, without labelling again."""
    from pipelines.nightly.pending import commit_later
    from pipelines.plumbing.night import normalised

    output = normalised(output)
    summary = commit_later(output, lock_stale_secs)
    click.echo(f"committed {output}: {summary['predicted']:,} predictions and {summary['dead_lettered']:,} dead "
               f"letters, also in BigQuery {summary['bigquery']['table']}")
