"""Options defined once: the command line is derived from the config dataclasses (issue #27, item 6)."""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib

import click
import pytest
from click.testing import CliRunner

from model.config import ArchitectureConfig, TrainConfig
from pipelines.app.cli import cli
from pipelines.app.page_limits import PageLimits
from pipelines.config import BatchConfig, StreamConfig
from pipelines.plumbing.lease_settings import LeaseSettings
from worker.config import WorkerConfig
from worker.defaults import DEFAULT_NIGHTLY_BATCH_SIZE, LIVE_MAX_BATCH_DURATION_SECS

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {
    "label": (WorkerConfig, BatchConfig),
    "stream": (WorkerConfig, StreamConfig, LeaseSettings),
    "train": (TrainConfig, ArchitectureConfig),
    "describe": (ArchitectureConfig,),
    "predict": (WorkerConfig,),
    "serve": (WorkerConfig, PageLimits),
}
# Where a job needs another default than the field's, the command names it (one constant each).
JOB_DEFAULTS = {
    "label": {"min_batch_size": DEFAULT_NIGHTLY_BATCH_SIZE, "max_batch_size": DEFAULT_NIGHTLY_BATCH_SIZE},
    "stream": {"max_batch_duration_secs": LIVE_MAX_BATCH_DURATION_SECS},
}


# Options the command writes itself because one option is not one field's value (`--xla auto|on|off` sets two
# fields, `--keep-columns` is a comma-separated list).
CONVERTED = {"keep_columns", "xla"}


def _fields(command: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for config in CONFIGS[command] for f in dataclasses.fields(config)}


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_each_option_takes_its_default_and_help_from_its_config_field(command):
    fields = _fields(command)
    params = [p for p in cli.commands[command].params
              if isinstance(p, click.Option) and p.name in fields and p.name not in CONVERTED]
    assert len(params) >= 2
    for param in params:
        field = fields[param.name]
        if field.default is not dataclasses.MISSING:
            expected = JOB_DEFAULTS.get(command, {}).get(param.name, field.default)
            assert param.default == expected, (command, param.name)
        else:
            assert param.required, (command, param.name)
        assert param.help == field.metadata.get("help"), (command, param.name)


@pytest.mark.parametrize("command", ["label", "stream", "predict", "serve", "evaluate", "precision", "pubsub-demo"])
def test_every_single_model_option_is_the_worker_configs_field(command):
    """Issue #44: `--model` (and, where a command has them, `--top-k` and `--review-threshold`) are derived
    from `WorkerConfig`, not written again in the command."""
    fields = {f.name: f for f in dataclasses.fields(WorkerConfig)}
    params = {p.name: p for p in cli.commands[command].params if isinstance(p, click.Option)}
    assert params["model_dir"].opts == ["--model"] and params["model_dir"].required
    for name in ("model_dir", "top_k", "review_threshold"):
        if name in params:
            assert params[name].help == fields[name].metadata["help"], (command, name)


def test_every_documented_field_is_an_option_somewhere():
    """A field given help is one a command offers: none documented and left unreachable."""
    offered = {(config, p.name) for command, configs in CONFIGS.items() for config in configs
               for p in cli.commands[command].params if p.name in {f.name for f in dataclasses.fields(config)}}
    documented = {(config, f.name) for configs in CONFIGS.values() for config in configs
                  for f in dataclasses.fields(config) if f.metadata.get("help")}
    assert documented <= offered, sorted((c.__name__, n) for c, n in documented - offered)


def test_parsed_values_build_the_configs_the_jobs_run_with(monkeypatch, tmp_path):
    """`label` hands the job the values given, and the defaults of what is not given, through the configs."""
    import pipelines.nightly.job

    seen = {}

    def capture(config, beam_args):
        seen["config"], seen["args"] = config, beam_args
        return {"template_location": "captured"}

    monkeypatch.setattr(pipelines.nightly.job, "run", capture)
    result = CliRunner().invoke(cli, [
        "label", "--model", "m", "--input", "in/*.parquet", "--output", "out", "--top-k", "5", "--no-progress",
        "--keep-columns", "a, b", "--xla", "off", "--runner", "DirectRunner"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.worker == WorkerConfig(model_dir="m", top_k=5, min_batch_size=DEFAULT_NIGHTLY_BATCH_SIZE,
                                         max_batch_size=DEFAULT_NIGHTLY_BATCH_SIZE, xla=False)
    assert (config.input_pattern, config.output, config.progress, config.keep_columns) == \
        ("in/*.parquet", "out", False, ("a", "b"))
    assert config.lock_stale_secs == BatchConfig.__dataclass_fields__["lock_stale_secs"].default
    assert seen["args"] == ["--runner", "DirectRunner"]


def test_an_option_out_of_its_fields_range_is_refused_in_one_line():
    result = CliRunner().invoke(cli, ["stream", "--model", "m", "--subscription", "s",
                                                    "--output-topic", "t", "--ack-deadline-secs", "5"])
    assert result.exit_code == 2 and "10<=x<=600" in result.output


@pytest.mark.parametrize(("args", "typed", "nearest"), [
    (["label", "--model", "m", "--input", "x/*.parquet", "--output", "{out}", "--kep-columns", "store",
      "--revew-threshold", "0.9"], "--kep-columns", "--keep-columns"),
    (["label", "--model", "m", "--input", "x/*.parquet", "--output", "{out}", "--revew-threshold=0.9"],
     "--revew-threshold", "--review-threshold"),
    (["label", "--model", "m", "--input", "x/*.parquet", "--output", "{out}", "--projct", "p"], "--projct",
     "--project"),
    (["stream", "--model", "m", "--subscription", "projects/p/subscriptions/s", "--output-topic",
      "projects/p/topics/t", "--max-batch-duration", "2"], "--max-batch-duration", "--max-batch-duration-secs"),
])
def test_an_option_neither_the_command_nor_beam_knows_is_refused_naming_the_nearest(tmp_path, args, typed,
                                                                                    nearest):
    """Issue #44: Beam drops options it does not know, so a typo ran with the defaults and exited 0."""
    result = CliRunner().invoke(cli, [a.format(out=tmp_path / "out") for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert f"no such option: {typed} " in errors[0] and f"did you mean {nearest}?" in errors[0]
    assert not (tmp_path / "out").exists()


def test_beam_options_still_reach_beam():
    from pipelines.options import refuse_unknown

    refuse_unknown(["--project", "p", "--temp_location=gs://b/t", "--runner", "DataflowRunner", "--region",
                    "europe-west1", "--setup_file", "./setup.py", "--save_main_session"], ["--model"])


def _parameters(node: ast.FunctionDef) -> int:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    return len(names) - (1 if names and names[0] in ("self", "cls") else 0)


def test_no_function_takes_more_than_about_eight_parameters():
    """The issue's "~8": nine at most (the L-BFGS solver's settings, scikit-learn style, are the widest)."""
    wide = []
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in ("model", "worker", "pipelines", "benchmarks"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _parameters(node) > 9:
                    wide.append(f"{path.relative_to(ROOT)}:{node.name} ({_parameters(node)})")
    assert wide == []


def _valid(option: click.Parameter) -> str:
    """A value the parameter's type accepts (an existing file, or folder, for a path that must exist)."""
    if isinstance(option.type, click.IntRange | click.FloatRange) or option.type in (click.INT, click.FLOAT):
        return "1"
    if isinstance(option.type, click.Path):
        return __file__ if option.type.file_okay else os.path.dirname(__file__)
    return "x"


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


@pytest.mark.parametrize(("path", "missing"), [
    (path, p.opts[0]) for path, command in _leaf_commands(cli) for p in command.params
    if isinstance(p, click.Option) and p.required])
def test_every_required_option_left_out_is_a_usage_line_never_a_traceback(path, missing):
    """Found with the review loop (issue #54): click 8.3+ takes an explicit default=None as a given value, so a
    required --model left out reached the command as None and ended in a TypeError. Each command, each of its
    required options left out (the others given), answers with click's usage error and runs nothing."""
    command = dict(_leaf_commands(cli))[path]
    given = [arg for p in command.params if isinstance(p, click.Option) and p.required and p.opts[0] != missing
             for arg in (p.opts[0], _valid(p))]
    arguments = [_valid(p) for p in command.params if isinstance(p, click.Argument) and p.required]
    result = CliRunner().invoke(cli, [*path, *arguments, *given])
    assert result.exit_code == 2, result.output
    assert f"Missing option '{missing}'" in result.output and "Traceback" not in result.output, result.output
