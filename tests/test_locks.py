"""The two locks (README: "The locks") satisfy setup.py, agree, and are what the tests run on."""

from __future__ import annotations

import pathlib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOT_INSTALLED_BY_US = {"pip", "setuptools", "wheel"}  # the venv's own tools, whatever the lock says


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, sep, version = line.partition("==")
            assert sep, f"{name}: {line!r} is not pinned with =="
            found[canonicalize_name(package)] = version.strip()
    return found


def declared() -> list[Requirement]:
    """setup.py's requirements, as the installed distribution reports them (extras as markers)."""
    return [Requirement(r) for r in metadata.requires("complaints") or []]


def test_every_declared_requirement_is_locked_within_its_range():
    dev, runtime = pins("requirements-dev.lock"), pins("requirements.lock")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        extra_only = requirement.marker is not None
        for lock_name, lock in [("requirements-dev.lock", dev)] + ([] if extra_only else
                                                                   [("requirements.lock", runtime)]):
            assert name in lock, f"{requirement} is not in {lock_name}: run .ci/lock"
            assert requirement.specifier.contains(lock[name], prereleases=True), \
                f"{lock_name} pins {name}=={lock[name]}, outside setup.py's {requirement}: run .ci/lock"


def test_runtime_lock_is_the_dev_lock_subset():
    dev, runtime = pins("requirements-dev.lock"), pins("requirements.lock")
    differing = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differing, f"requirements.lock and requirements-dev.lock disagree: {differing}; run .ci/lock"
    assert not {"pytest", "gradio", "ruff"} & set(runtime), "dev or ui packages leaked into the runtime lock"


def test_the_tests_run_on_the_locked_versions():
    """CI installs with -c requirements-dev.lock; a drifted environment would test something else."""
    drifted = {}
    for name, version in pins("requirements-dev.lock").items():
        if name in NOT_INSTALLED_BY_US:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drifted[name] = (version, installed)
    if drifted:
        pytest.fail(f"installed versions differ from requirements-dev.lock (locked, installed): {drifted}; "
                    "reinstall with: pip install -c requirements-dev.lock -e '.[dev]'")
