"""The Flex Template entry point of both jobs: `--job label|stream`, then the command's own options.

The launcher passes each template parameter as `--name=value`; `job` picks the
command and the rest go to it unchanged (Beam options included), so a template run
is the same `complaints label` / `complaints stream` a user runs by hand.
"""

from __future__ import annotations

import sys


def command_line(argv: list[str]) -> list[str]:
    """`--job=label --model=…` → `label --model=…`, with a worker image's defaults for Dataflow."""
    rest, job = [], None
    for arg in argv:
        if arg.startswith("--job="):
            job = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if job not in ("label", "stream"):
        raise SystemExit(f"error: --job must be label or stream, not {job!r}")
    if not any(a.startswith("--runner") for a in rest):
        rest.append("--runner=DataflowRunner")
    if job == "label":
        rest.append("--no-progress")
    return [job, *rest]


def main(argv: list[str] | None = None) -> None:
    from pipelines.app.cli import cli

    cli(command_line(sys.argv[1:] if argv is None else argv), prog_name="complaints")


if __name__ == "__main__":
    main()
