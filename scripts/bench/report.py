"""The table printed at the end of a run and the chart written beside ``bench.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .base import Result, Section

TableRow = tuple[str, str, str, str, str]
COLUMNS = 3


def measured(results: dict[str, Any], key: str) -> Result | None:
    """A section's result, or None when it did not run or failed."""
    result = results.get(key)
    return result if result and "error" not in result else None


def table_rows(results: dict[str, Any], sections: dict[str, Section]) -> list[TableRow]:
    rows: list[TableRow] = []
    for key, section in sections.items():
        result = measured(results, key)
        if result is not None:
            rows += [(key, *row) for row in section.rows(result)]
    for key, r in results.items():
        if isinstance(r, dict) and "error" in r:
            rows.append((key, "ERROR", r["error"][:80], "", ""))
    return rows


def print_table(rows: list[TableRow]) -> str:
    header = ("sec", "metric", "value", "target", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    last = None
    for r in rows:
        if last is not None and r[0] != last:
            lines.append("")
        last = r[0]
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    text = "\n".join(lines)
    print(text)
    return text


def draw_chart(results: dict[str, Any], sections: dict[str, Section], path: Path) -> None:
    """One panel per section, in section order, then a panel with the run's metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = math.ceil((len(sections) + 1) / COLUMNS)
    fig, axes = plt.subplots(nrows, COLUMNS, figsize=(16, 4.5 * nrows))
    panels = list(axes.flat)
    for (key, section), ax in zip(sections.items(), panels, strict=False):
        section.draw(ax, measured(results, key))
    for ax in panels[len(sections) :]:
        ax.axis("off")
    meta = results.get("meta", {})
    panels[len(sections)].text(
        0,
        1,
        "\n".join(f"{k}: {v}" for k, v in meta.items() if not isinstance(v, dict | list)),
        va="top",
        fontsize=8,
        family="monospace",
    )
    fig.suptitle("kombu-worker benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
