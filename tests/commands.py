"""The command line as the tests drive it: click's runner, and the one-`error:`-line check."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.app.cli import cli


def invoke(*args):
    """`complaints ARGS…` in-process (paths and numbers may be given as they are)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error(result, *fragments):
    """Exit 2 with exactly one `error:` line containing every fragment, and no traceback."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
