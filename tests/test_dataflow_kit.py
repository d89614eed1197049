"""The Dataflow deployment kit agrees with the code it deploys (issue #28, item 3).

Dataflow, Artifact Registry and docker cannot run here: these tests check what can be
checked offline, that the kit's pieces name the versions, options and commands that
exist.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re

import click
import pytest

from pipelines.app.cli import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
KIT = ROOT / "dataflow"


def _main():
    spec = importlib.util.spec_from_file_location("flex_main", KIT / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_worker_image_is_beams_sdk_image_of_the_pinned_version():
    dockerfile = (KIT / "Dockerfile").read_text()
    pinned = re.search(r"^apache-beam==(\S+)", (ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert re.search(r"^ARG BEAM_VERSION=(\S+)", dockerfile, re.M).group(1) == pinned
    python = re.search(r"beam_python(\d+\.\d+)_sdk", dockerfile).group(1)
    assert f"--python-version {python}" in (ROOT / ".ci" / "lock").read_text()  # the lock was solved for it
    assert "pip install --no-cache-dir -r requirements.lock" in dockerfile


def test_the_worker_image_has_openvino_at_the_pin_ci_tested():
    """Workers serve OpenVINO's f32 and bf16 under auto only if the image has OpenVINO: it is in the runtime
    lock the image installs, at the version of the dev lock CI tests with."""
    pins = {lock: dict(line.split()[0].split("==") for line in (ROOT / lock).read_text().splitlines()
                       if "==" in line.split("#")[0]) for lock in ("requirements.lock", "requirements-dev.lock")}
    assert pins["requirements.lock"]["openvino"] == pins["requirements-dev.lock"]["openvino"]
    assert "pip install --no-cache-dir -r requirements.lock" in (KIT / "Dockerfile").read_text()


@pytest.mark.parametrize("job", ["label", "stream"])
def test_each_templates_choices_are_its_commands(job):
    """A template parameter's regex accepts exactly the values the command's option accepts."""
    metadata = json.loads((KIT / f"{job}-metadata.json").read_text())
    choices = {p.name: p.type.choices for p in cli.commands[job].params if isinstance(p.type, click.Choice)}
    checked = 0
    for parameter in metadata["parameters"]:
        name = parameter["name"].replace("-", "_")
        if name in choices and parameter.get("regexes"):
            pattern = re.compile(parameter["regexes"][0])
            assert all(pattern.match(c) for c in choices[name]), (name, choices[name])
            alternatives = re.fullmatch(r"\^\((.*)\)\$", parameter["regexes"][0]).group(1).split("|")
            assert sorted(alternatives) == sorted(choices[name]), name
            checked += 1
    assert checked, "no template parameter with choices"


@pytest.mark.parametrize("job", ["label", "stream"])
def test_every_template_parameter_is_an_option_of_its_command(job):
    metadata = json.loads((KIT / f"{job}-metadata.json").read_text())
    options = {opt for p in cli.commands[job].params if isinstance(p, click.Option) for opt in p.opts}
    names = [p["name"] for p in metadata["parameters"] if p["name"] != "job"]
    assert names and all(f"--{name}" in options for name in names), sorted(set(names) - {
        o[2:] for o in options})
    required = {opt for p in cli.commands[job].params if isinstance(p, click.Option) and p.required for opt in p.opts}
    assert all(f"--{p['name']}" not in required for p in metadata["parameters"] if p.get("isOptional"))


def test_the_template_entry_point_runs_the_command_a_user_would():
    main = _main()
    argv = main.command_line(["--job=label", "--model=gs://b/m", "--input=gs://b/in/*.parquet", "--output=gs://b/o",
                              "--project=p", "--region=europe-west1"])
    assert argv[0] == "label" and "--runner=DataflowRunner" in argv and "--no-progress" in argv
    context = cli.commands["label"].make_context("label", argv[1:])  # parses as the CLI would: nothing missing
    assert context.params["model_dir"] == "gs://b/m" and "--project=p" in context.args
    assert main.command_line(["--job=stream", "--runner=DirectRunner"]) == ["stream", "--runner=DirectRunner"]
    with pytest.raises(SystemExit, match="--job must be label or stream"):
        main.command_line(["--model=m"])
