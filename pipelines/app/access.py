"""Who may reach the web page: Gradio's own login, and no open page on the network by accident.

A page bound to a non-loopback address without a login would show every model and
every uploaded complaint to anyone on the network, so that takes an explicit
`--insecure-no-auth`; on loopback only this machine's users can reach it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from model.errors import UserError

MAX_AUTH_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Access:
    host: str = "127.0.0.1"
    auth: str | None = None  # USER:PASSWORD
    auth_file: str | None = None  # one USER:PASSWORD per line
    insecure_no_auth: bool = False

    def credentials(self) -> list[tuple[str, str]]:
        """The accounts Gradio's login checks; refuses a network address with none."""
        pairs = []
        if self.auth:
            pairs.append(_pair(self.auth, "--auth"))
        if self.auth_file:
            pairs.extend(_read_auth_file(self.auth_file))
        if not pairs and not is_loopback(self.host) and not self.insecure_no_auth:
            raise UserError(f"--host {self.host} makes the page reachable from the network, and it has no login: "
                            "give --auth USER:PASSWORD or --auth-file FILE (or --insecure-no-auth if you mean it)")
        return pairs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so it counts as the network
        return False


def _pair(line: str, where: str) -> tuple[str, str]:
    user, sep, password = line.partition(":")
    if not sep or not user.strip() or not password:
        raise UserError(f"{where}: expected USER:PASSWORD with a non-empty user and password")
    return user.strip(), password


def _read_auth_file(path: str) -> list[tuple[str, str]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_AUTH_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"--auth-file {path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_AUTH_FILE_BYTES:
        raise UserError(f"--auth-file {path}: larger than {MAX_AUTH_FILE_BYTES // 1024} KiB; "
                        "it should hold one USER:PASSWORD per line")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--auth-file {path}: not UTF-8 text") from None
    pairs = [_pair(line, f"--auth-file {path} line {n}")
             for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not pairs:
        raise UserError(f"--auth-file {path}: no USER:PASSWORD line in it")
    return pairs
