"""Command-line options derived from the config dataclasses, so each option's default and help are written once.

A config field describes its option in its metadata: `help`, and where needed
`option` (the flag's name, when it is not the field's), `low`/`high` (the accepted
range) and `choices`. `options(Config, names…)` adds one click option per field,
typed from the field's annotation and defaulting to the field's default (a command
may name a different default where its job needs one, e.g. the nightly job's batch
size); `build(Config, values)` takes those values back out of the command's
arguments. A field without a default is a required option.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import click


def _base(annotation: Any) -> type:
    """`int | None` → int; `str` → str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0]
    return annotation


def _click_type(kind: type, meta: dict):
    if meta.get("choices"):
        return click.Choice(list(meta["choices"]))
    if kind is int:
        return click.IntRange(meta.get("low"), meta.get("high")) if "low" in meta or "high" in meta else int
    if kind is float:
        return click.FloatRange(meta.get("low"), meta.get("high")) if "low" in meta or "high" in meta else float
    return kind


def _option(f: dataclasses.Field, kind: type, default: Any) -> Callable:
    meta = dict(f.metadata)
    flag = meta.get("option", "--" + f.name.replace("_", "-"))
    required = default is dataclasses.MISSING
    if kind is bool:
        negative = "--no-" + flag.removeprefix("--")
        return click.option(f"{flag}/{negative}", f.name, default=default, show_default=True, help=meta.get("help"))
    if required:  # no default at all: click 8.3+ takes an explicit default=None as given, and skips the check
        return click.option(flag, f.name, type=_click_type(kind, meta), required=True, help=meta.get("help"))
    return click.option(flag, f.name, type=_click_type(kind, meta), default=default,
                        show_default=default is not None, help=meta.get("help"))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def options(config: type, *names: str, **defaults: Any) -> Callable:
    """A decorator adding the options of `config`'s fields `names`, in that order; `defaults` override the
    fields' own for this command."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(config)

    def add(command: Callable) -> Callable:
        for name in reversed(names):
            f = fields[name]
            command = _option(f, _base(hints[name]), defaults.get(name, _default(f)))(command)
        return command

    return add


def build(config: type, values: dict, **extra: Any):
    """`config` from the command's values for its fields (taken out of `values`), and `extra` fields."""
    names = {f.name for f in dataclasses.fields(config)}
    return config(**{name: values.pop(name) for name in list(values) if name in names}, **extra)
