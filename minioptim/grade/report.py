"""The report: one result per check, PASS or FAIL with details and a hint, and the
summary."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WIDTH = 79  # the report's lines fit a page of the book
INDENT = " " * 6


@dataclass
class Result:
    """The outcome of one check: its name, PASS or FAIL, what went wrong, a hint."""

    check: str
    passed: bool
    details: list[str] = field(default_factory=list)
    hint: str | None = None

    def lines(self, previous: Result | None = None) -> list[str]:
        """The report's lines; a failure like ``previous`` says "as above"."""
        status = "PASS" if self.passed else "FAIL"
        out = wrap(f"{status}  {self.check}", first="", rest=INDENT)
        same = previous is not None and not previous.passed
        if same and (self.details, self.hint) == (previous.details, previous.hint):
            return [*out, f"{INDENT}(as above)"]
        for detail in self.details:
            out += wrap(detail, first=INDENT, rest=INDENT)
        if self.hint:
            out += wrap(f"hint: {self.hint}", first=INDENT, rest=INDENT)
        return out


def wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def format_hyper(hyper: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyper.items()) or "the defaults"


@dataclass
class Report:
    """All results of one assignment; ``str(report)`` is what :func:`grade` prints."""

    assignment: str
    title: str
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[Result]:
        return [result for result in self.results if not result.passed]

    def header(self) -> str:
        return f"{self.assignment}: {self.title}"

    def summary(self) -> str:
        n, failed = len(self.results), len(self.failed)
        if not failed:
            return f"All {n} checks passed."
        return f"{n - failed} of {n} checks passed, {failed} failed."

    def __str__(self) -> str:
        lines = [self.header()]
        for previous, result in zip([None, *self.results], self.results, strict=False):
            lines += result.lines(previous)
        return "\n".join([*lines, self.summary()])

    def __repr__(self) -> str:
        return f"<Report {self.assignment}: {self.summary()}>"


class GradingFailed(AssertionError):
    """Raised by :func:`grade` when a check fails; the report above says which and why.

    In a notebook it shows as one line, without a traceback (``_render_traceback_`` is
    the hook IPython uses for exceptions that render themselves).
    """

    def __init__(self, report: Report) -> None:
        super().__init__(f"{report.summary()} See the report above.")
        self.report = report

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]
