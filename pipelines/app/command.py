"""The click classes every `complaints` command runs through: TensorFlow imported only once a command runs, Beam
options checked, models:/ resolved once, and a UserError anywhere as one `error:` line."""

from __future__ import annotations

import click

from model.errors import UserError
from pipelines.app.console import fail, quiet_tensorflow


class Command(click.Command):
    """Imports TensorFlow (quietly) only once the command's arguments are parsed, so
    `--help` and usage errors answer at once instead of after TensorFlow's 3–5 s import."""

    def invoke(self, ctx: click.Context):
        if self.name not in WITHOUT_TENSORFLOW:
            quiet_tensorflow()
        if ctx.args:  # a command that hands the options it does not know to Beam
            from pipelines.options import refuse_unknown

            refuse_unknown(list(ctx.args), [opt for param in self.params for opt in param.opts
                                            if opt.startswith("--")])
        if {"model_dir", "models", "watch_models"} & set(ctx.params):
            from pipelines.app.registered import resolve_params

            resolve_params(ctx.params, self.callback)  # models:/… → a checked local copy, once, here
        return super().invoke(ctx)


WITHOUT_TENSORFLOW = {"sample-data", "pubsub-demo", "promote"}  # unlock and commit settle sinks, which import it


class Group(click.Group):
    """Turns UserError anywhere below into one `error:` line and exit code 2."""

    command_class = Command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            fail(str(exc))
