"""Never a half-written archive: stage, then commit, then mark `_SUCCESS` last.

A run writes everything under `OUTPUT/.staging-<run id>/`. Only after the pipeline
has finished are the previous run's files removed, the staged files moved up, the
summary written and, last of all, `OUTPUT/_SUCCESS`. A run also removes `_SUCCESS`
before it starts, so while a run is replacing an output, or after one failed, the
directory does not claim to be complete. Consumers read an output only when
`_SUCCESS` exists.
"""

from __future__ import annotations

import json
import posixpath

from apache_beam.io.filesystems import FileSystems

from model.errors import UserError

SUCCESS = "_SUCCESS"
SUMMARY = "summary.json"
REPORT = "report.png"


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def staging_dir(output: str, run_id: str) -> str:
    return join(output, f".staging-{run_id}")


def _delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def _matching(directory: str, pattern: str) -> list[str]:
    return [m.path for m in FileSystems.match([join(directory, pattern)])[0].metadata_list]


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def read_summary(output: str) -> dict:
    """A completed run's summary.json (for --compare-to), or one line saying why it cannot be read."""
    path = join(output, SUMMARY)
    if not FileSystems.exists(join(output, SUCCESS)) or not FileSystems.exists(path):
        raise UserError(f"--compare-to {output} is not a completed output (no _SUCCESS or summary.json): "
                        "point it at a previous night's --output")
    try:
        return json.loads(read_text(path))
    except ValueError:
        raise UserError(f"{path} is not valid JSON: point --compare-to at a previous night's --output") from None


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read().decode("utf-8")


def prepare(output: str, staging: str) -> None:
    """Check the output is writable, withdraw the old `_SUCCESS`, create the staging dir."""
    probe = join(staging, ".write-test")
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        if not FileSystems.exists(staging):
            FileSystems.mkdirs(staging)
        write_text(probe, "ok")
        FileSystems.delete([probe])
        _delete([join(output, SUCCESS)])
    except Exception as exc:  # noqa: BLE001 (filesystems raise their own types)
        raise UserError(
            f"cannot write to the output location {output} ({str(exc).splitlines()[0]}): "
            "choose a writable --output"
        ) from None


def abort(staging: str) -> None:
    """Remove what a failed run staged; nothing in the output directory changed."""
    try:
        _delete([staging])
    except Exception:  # noqa: BLE001 (best effort: the error being reported matters more)
        pass


def publish(output: str, staging: str, patterns: tuple[str, ...]) -> list[str]:
    """Replace the output's files matching `patterns` with the staged ones; returns the published names."""
    _delete([p for pattern in patterns for p in _matching(output, pattern)])
    staged = [p for pattern in patterns for p in _matching(staging, pattern)]
    final = [join(output, posixpath.basename(p)) for p in staged]
    if staged:
        FileSystems.rename(staged, final)
    return [posixpath.basename(p) for p in final]


def commit(output: str, staging: str, summary: dict, published: list[str]) -> dict:
    """After the sinks have published (`published`): the report, the summary, and `_SUCCESS` last.

    Returns the summary as written, with every published file name in `output_files`.
    """
    published = published + publish(output, staging, (REPORT, SUMMARY))
    summary = {**summary, "output_files": sorted(published)}
    write_text(join(output, SUMMARY), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    _delete([staging])
    write_text(join(output, SUCCESS), "")
    return summary
