"""Background processes started by ``megagpu dev``: logs in one place, tracked by pid file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(
    name: str, argv: Sequence[str], log_dir: Path, pid_dir: Path, env: dict[str, str] | None = None
) -> int:
    """Start ``argv`` in its own session, output to ``<log_dir>/<name>.log``; returns its pid."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pid_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    (pid_dir / f"{name}.pid").write_text(str(proc.pid))
    (pid_dir / f"{name}.argv").write_text(json.dumps(list(argv)))
    return proc.pid


def restart(name: str, log_dir: Path, pid_dir: Path) -> int:
    """Start a tracked process again with the command line it was first started with."""
    argv = json.loads((pid_dir / f"{name}.argv").read_text())
    return start(name, argv, log_dir, pid_dir)


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs (and is not a zombie); 0 or less is none."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pids(pid_dir: Path) -> dict[str, int]:
    """Name -> pid of every tracked process (alive or not)."""
    found = {}
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            found[path.stem] = int(path.read_text().strip())
    return found


def stop_all(pid_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """SIGTERM every tracked process group, SIGKILL what remains; returns the names stopped."""
    tracked = pids(pid_dir)
    for pid in tracked.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in tracked.values()) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.1)
    for pid in tracked.values():
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    _reap()
    for name in tracked:
        (pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return list(tracked)


def stop_one(name: str, pid_dir: Path, timeout_s: float = 10.0) -> bool:
    """Stop one tracked process group (SIGTERM, then SIGKILL); False when it was not running."""
    pid = pids(pid_dir).get(name)
    if pid is None:
        return False
    was_alive = alive(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _reap()
    (pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return was_alive


def _reap() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
