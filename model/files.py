"""The model directory's files, local or on an object store (`gs://…`), through one small seam.

Local paths use the operating system. Object-store paths use Apache Beam's
`FileSystems`: the client the jobs already read archives and write outputs with, so
a model directory on `gs://` needs no second client, credentials or settings, and a
storage emulator (`STORAGE_EMULATOR_HOST`) stands in for GCS in the tests.
TensorFlow's own `gs://` file system cannot: its endpoints are fixed. (Beam is
imported only for such a path; the model room otherwise needs TensorFlow alone.)
"""

from __future__ import annotations

import glob as local_glob
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass


def remote(path: str) -> bool:
    return "://" in path


def _fs():
    from apache_beam.io.filesystems import FileSystems

    emulator_without_credentials()
    return FileSystems


def emulator_without_credentials() -> None:
    """With `STORAGE_EMULATOR_HOST` set, GCS is a local emulator, which takes no credentials: tell Beam so.

    Otherwise Beam's first GCS call in a process spends about 25 s (four retries with
    backoff) looking for credentials before it connects anonymously. Beam has no
    public switch for this (`--no_auth` does not reach its GCS client), so its cached
    answer is set here, to the anonymous client it would have ended with.
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from apache_beam.internal.gcp import auth

        with auth._Credentials._credentials_lock:
            auth._Credentials._credentials, auth._Credentials._credentials_init = None, True


def join(directory: str, name: str) -> str:
    return posixpath.join(directory, name) if remote(directory) else f"{directory.rstrip('/')}/{name}"


@dataclass(frozen=True)
class Stat:
    length: int
    mtime_nsec: int


def stat(path: str) -> Stat:
    """Size and modification time; FileNotFoundError when there is no such file."""
    if not remote(path):
        found = os.stat(path)
        return Stat(found.st_size, found.st_mtime_ns)
    matched = _fs().match([path])[0].metadata_list
    exact = [m for m in matched if m.path == path]
    if not exact:
        raise FileNotFoundError(path)
    return Stat(exact[0].size_in_bytes, int(exact[0].last_updated_in_seconds * 1e9))


def exists(path: str) -> bool:
    return os.path.exists(path) if not remote(path) else _fs().exists(path)


def isdir(path: str) -> bool:
    """A local directory; on an object store, a prefix with at least one object under it."""
    if not remote(path):
        return os.path.isdir(path)
    return bool(_fs().match([path.rstrip("/") + "/**"])[0].metadata_list)


def glob(pattern: str) -> list[str]:
    """Paths matching `pattern`; on an object store, `dir/*` also names the "folders" objects sit in."""
    if not remote(pattern):
        return sorted(local_glob.glob(pattern))
    depth = pattern.rstrip("/").count("/")
    found = set()
    for meta in _fs().match([pattern.rstrip("/") + "/**"])[0].metadata_list + \
            _fs().match([pattern])[0].metadata_list:
        parts = meta.path.split("/")
        found.add("/".join(parts[:depth + 1]))
    return sorted(found)


def read_bytes(path: str) -> bytes:
    if not remote(path):
        with open(path, "rb") as f:
            return f.read()
    with _fs().open(path, compression_type="uncompressed") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    if not remote(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    with _fs().create(path) as f:
        f.write(data)


def makedirs(path: str) -> None:
    if not remote(path):
        os.makedirs(path, exist_ok=True)  # object stores have no folders


def files_under(directory: str) -> list[str]:
    """Every file below `directory`, as paths relative to it."""
    directory = directory.rstrip("/")
    if not remote(directory):
        return sorted(os.path.relpath(os.path.join(root, name), directory)
                      for root, _, names in os.walk(directory) for name in names)
    return sorted(m.path[len(directory) + 1:] for m in _fs().match([directory + "/**"])[0].metadata_list)


def copy(source: str, target: str) -> None:
    if not remote(source) and not remote(target):
        shutil.copyfile(source, target)
    else:
        write_bytes(target, read_bytes(source))


def private_copy(data: bytes, suffix: str = "") -> str:
    """A new temporary file (readable by this user only) holding `data`; the caller removes it."""
    handle, local = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(handle, "wb") as f:
        f.write(data)
    return local
