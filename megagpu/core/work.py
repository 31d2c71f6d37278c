"""The work contract (DESIGN 9.10): which size an outcome is learned with, and why.

A container's report (its termination message) wins over the workload's declaration
(``spec.work``). A report that cannot be used (not JSON, not a finite positive number, another
unit than the declared one, or more than ``FAR_OUTSIDE`` times off the declaration) makes the size
unknown: the learner then never reads the run time as a speed, and the problem is said in an
Event. Unknown size is the safe side: a wrong size is a wrong speed, an unknown one is no speed.
"""

from __future__ import annotations

from typing import NamedTuple

from megagpu.core import model

FAR_OUTSIDE = 10.0
"""A report more than this factor above or below the declared amount is not believed: declared
sizes are estimates (x0.5 to x2 is ordinary), a factor of 10 is a different job or a unit slip."""


class Report(NamedTuple):
    """What a finished pod's containers said about the work they did."""

    amount: float | None
    """The reported work; None when the report is unusable (``problem`` says why)."""
    unit: str = ""
    """The reported unit, when the container named one."""
    problem: str | None = None


class Size(NamedTuple):
    """The size an outcome is learned with."""

    work: model.Work | None
    source: str
    """``reported``, ``declared`` or ``none``."""
    problem: str | None
    """Why a report was not used (for an Event), else None."""


def resolve(declared: model.Work | None, report: Report | None) -> Size:
    """The size of an outcome from the declaration and the containers' report, if any."""
    if report is None:
        if declared is None:
            return Size(None, "none", None)
        return Size(declared, "declared", None)
    problem = report.problem
    if report.amount is not None and problem is None:
        unit = report.unit or (declared.unit if declared else "")
        if declared is not None and report.unit and declared.unit and report.unit != declared.unit:
            problem = f"reported unit {report.unit!r} differs from the declared {declared.unit!r}"
        elif declared is not None and not (
            declared.amount / FAR_OUTSIDE <= report.amount <= declared.amount * FAR_OUTSIDE
        ):
            problem = (
                f"reported work {report.amount:g} is more than {FAR_OUTSIDE:g}x away from the "
                f"declared {declared.amount:g}"
            )
        else:
            return Size(model.Work(report.amount, unit), "reported", None)
    return Size(None, "none", f"{problem}; learned without a size")
