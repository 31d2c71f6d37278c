"""Long image-build steps: output streamed with elapsed time, failures told in one line."""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from megagpu.devcluster.errors import DevClusterError

Output = Callable[[str], None]
TAIL_LINES = 40
"""Lines of a failed step kept for its diagnosis (the full output is in its log file)."""

DEBIAN_UNREACHABLE = (
    "E: Failed to fetch",
    "Temporary failure resolving",
    "Could not resolve",
    "Could not connect",
    "Unable to connect",
    "Connection failed",
    "Connection timed out",
)
"""apt's words when the mirror cannot be reached (most telling first: the URL and the cause)."""
PYPI_UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "CERTIFICATE_VERIFY_FAILED",
    "SSLError",
    "ProxyError",
    "Read timed out",
    "(from versions: none)",
)
"""pip's words when the index cannot be reached (most telling first; ``versions: none`` last, as
a package that does not exist gives it too)."""
LINE_CHARS = 240
"""A quoted line is cut to this length (the log has it whole)."""
RETRY = "then run `make image` again (what was built so far is cached)"


def require(tool: str) -> str:
    """Path of ``tool``, or an error that says how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise DevClusterError(
            f"{tool} is not installed, and building images without a Docker daemon needs it: "
            "run `make host-packages` (Debian: mmdebstrap, buildah, uidmap, gcc)"
        )
    return path


def diagnose(step: str, returncode: int, tail: Sequence[str], log: Path) -> str:
    """A short message for a failed step: what failed and what to do."""
    lines = [line.strip() for line in tail if line.strip()]
    debian = _first(lines, DEBIAN_UNREACHABLE)
    if debian:
        return (
            f"{step}: the Debian package mirror (deb.debian.org) cannot be reached "
            f"({debian}); check this machine's network or proxy (http_proxy), {RETRY}"
        )
    pypi = _first(lines, PYPI_UNREACHABLE)
    if pypi:
        return (
            f"{step}: the Python package index (pypi.org) cannot be reached from the build "
            f"({pypi}); check the network, and that /etc/ssl/certs/ca-certificates.crt holds "
            f"the certificate authority your proxy needs, {RETRY}"
        )
    last = lines[-1] if lines else "no output"
    return f"{step} failed (exit {returncode}): {last}; the whole output is in {log}"


def _first(lines: Sequence[str], marks: Sequence[str]) -> str | None:
    """The first line with the earliest of ``marks`` that any line has."""
    for mark in marks:
        for line in lines:
            if mark in line:
                return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..."
    return None


def run(
    step: str,
    argv: Sequence[str],
    log: Path,
    out: Output,
    show: Callable[[str], bool] = lambda _: True,
) -> None:
    """Run one step, print the lines ``show`` picks with elapsed seconds.

    Every line goes to ``log``. A failure raises DevClusterError with :func:`diagnose`'s message.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with (
        open(log, "w") as record,
        subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        for line in proc.stdout or ():
            record.write(line)
            tail.append(line)
            if show(line):
                out(f"[{time.monotonic() - start:6.0f}s] {line.rstrip()}")
    if proc.returncode != 0:
        raise DevClusterError(diagnose(step, proc.returncode, tail, log))


def capture(step: str, argv: Sequence[str], log: Path) -> str:
    """Run a short step and return its standard output, stripped (failures as in :func:`run`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).splitlines()[-TAIL_LINES:]
        raise DevClusterError(diagnose(step, done.returncode, tail, log))
    return done.stdout.strip()
