"""The product speaks to users: no team bookkeeping (issue numbers, plans) in code, help or docs."""

import argparse
import re
from pathlib import Path

from megagpu import cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("megagpu", "docs", "README.md", "charts")
BOOKKEEPING = re.compile(rb"issue [0-9]", re.IGNORECASE)
PLANS = re.compile(r"\b(issue|planned|not built yet)\b", re.IGNORECASE)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [f for f in sorted(path.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]


def test_no_issue_numbers_in_what_ships():
    """What ``grep -rni "issue [0-9]" megagpu docs README.md charts`` checks (bytecode aside)."""
    files = [f for p in SHIPPED for f in _files(ROOT / p)]
    assert len(files) > 50
    hits = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_bytes().splitlines(), 1)
        if BOOKKEEPING.search(line)
    ]
    assert not hits


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_help_text_speaks_of_issues_or_plans():
    """Every command's help, with the one-line summaries of its subcommands."""
    helps = {p.prog: p.format_help() for p in _parsers(cli._parser())}
    assert "megagpu exec" in helps and len(helps) > 15
    assert not [prog for prog, text in helps.items() if PLANS.search(text)]
