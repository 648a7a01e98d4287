"""Which local processes are alive, and which are ours: identities that survive pid reuse.

A process is identified by its pid and its start time (clock ticks since boot, from
/proc/<pid>/stat), so a record naming a process that died is never fooled by a new process
that got the same pid. Where /proc is missing (macOS), the start time is unknown and a live
pid is taken at its word.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()


def state(pid: int) -> str | None:
    """The state letter (R, S, Z, ...) or None when there is no such process."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def identity(pid: int | None = None) -> dict:
    """What a record keeps to recognise a process later (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return {"Pid": pid, "StartTicks": start_ticks(pid), "Host": socket.gethostname()}


def is_alive(ident: Mapping) -> bool:
    """Whether the process a record names still runs. A record from another host cannot be
    checked here and counts as alive (its own host judges it)."""
    if ident.get("Host") not in (None, socket.gethostname()):
        return True
    pid = int(ident.get("Pid") or 0)
    if pid <= 0:
        return False
    if PROC.is_dir():
        if state(pid) in (None, "Z", "X"):
            return False
        recorded = ident.get("StartTicks")
        return recorded is None or start_ticks(pid) == recorded
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def command_lines() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process this user can read (nothing where /proc is missing)."""
    if not PROC.is_dir():
        return
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw and state(int(entry.name)) not in (None, "Z", "X"):
            yield int(entry.name), raw.decode(errors="replace").rstrip("\0").split("\0")
