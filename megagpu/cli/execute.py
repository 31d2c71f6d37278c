"""``megagpu exec``: run a command with the runtime variables of the pod's assigned devices."""

from __future__ import annotations

import argparse
import os
import sys

from megagpu.cli.errors import UsageError
from megagpu.core import visibility

COMMAND_NOT_FOUND = 127
"""A shell's exit code for a command it cannot find."""
CANNOT_EXECUTE = 126
"""A shell's exit code for a command it found but cannot run (not executable, not a program)."""


def cmd_exec(args: argparse.Namespace) -> int:
    """Replace this process with the command; returns only when it cannot be run."""
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UsageError(
            "megagpu exec: give the command to run after --, for example megagpu exec -- nvidia-smi"
        )
    try:
        assignment = visibility.parse_assignment(os.environ)
        env = {**os.environ, **visibility.runtime_variables(assignment, os.environ)}
    except visibility.AssignmentError as e:
        raise UsageError(f"megagpu exec: {e}") from e
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"megagpu exec: {command[0]}: command not found", file=sys.stderr)
        return COMMAND_NOT_FOUND
    except OSError as e:
        print(f"megagpu exec: {command[0]}: cannot run: {e.strerror}", file=sys.stderr)
        return CANNOT_EXECUTE
