"""What a section is: a run, its rows in the table, its panel in the chart, its targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings

#: A table row without its section column: metric, value, target, verdict.
Row = tuple[str, str, str, str]
Result = dict[str, Any]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    #: Runs in a child process of its own; returns what ``bench.json`` holds under ``key``.
    run: Callable[[Settings, Path], Result]
    #: The table rows of a result that has no ``error``.
    rows: Callable[[Result], list[Row]]
    #: Draws the chart panel on a matplotlib ``Axes``; the result is None when the run failed.
    draw: Callable[[Any, Result | None], None]
    #: Written to ``bench.json``'s ``targets``; each key starts with the section's key.
    targets: dict[str, float]
    #: A line printed last in the parent's output (a figure scripts can grep), or None.
    summary: Callable[[Result], str] | None = None


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"
