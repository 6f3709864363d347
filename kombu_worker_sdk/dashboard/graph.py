"""A job's task tree as inline SVG, drawn on the server: no script, no layout library.

Edges are parent → child, plus every fan-in member → the child its barrier released
(the state store records only the last sibling as the child's parent). A task sits one
row below its deepest parent, so a fan-in child sits below all of its siblings. Nodes
are links to the task's section on the page, coloured by state through CSS classes
(the Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from kombu_worker_sdk.state.monitor import TaskDetail

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 38, 22, 46, 12
MAX_NODES = 300


@dataclass(frozen=True)
class Graph:
    svg: Markup
    edges: list[tuple[str, str]]
    depth: dict[str, int]


def edges_of(tasks: list[TaskDetail], fan_in: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(parent, child) pairs; ``fan_in`` is (member, released_by) from the barriers."""
    known = {t.task_id for t in tasks}
    children: dict[str, list[str]] = defaultdict(list)
    edges: set[tuple[str, str]] = set()
    for task in tasks:
        if task.parent_task_id in known:
            assert task.parent_task_id is not None
            children[task.parent_task_id].append(task.task_id)
            edges.add((task.parent_task_id, task.task_id))
    for member, released_by in fan_in:
        if member in known:
            edges.update((member, child) for child in children.get(released_by, []))
    return sorted(edges)


def depths(tasks: list[TaskDetail], edges: list[tuple[str, str]]) -> dict[str, int]:
    parents: dict[str, list[str]] = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    found: dict[str, int] = {}

    def depth_of(task_id: str, seen: frozenset[str]) -> int:
        if task_id not in found:
            above = [p for p in parents.get(task_id, []) if p not in seen]
            found[task_id] = 1 + max((depth_of(p, seen | {task_id}) for p in above), default=-1)
        return found[task_id]

    for task in tasks:
        depth_of(task.task_id, frozenset())
    return found


def short_label(task_id: str, job_id: str) -> str:
    label = task_id[len(job_id) :].lstrip("-_.:") if task_id.startswith(job_id) else task_id
    label = label or task_id
    return label if len(label) <= 24 else label[:23] + "…"


def draw(tasks: list[TaskDetail], fan_in: list[tuple[str, str]]) -> Graph:
    shown = tasks[:MAX_NODES]
    edges = edges_of(shown, fan_in)
    depth = depths(shown, edges)
    rows: dict[int, list[TaskDetail]] = defaultdict(list)
    for task in shown:
        rows[depth[task.task_id]].append(task)
    widest = max((len(r) for r in rows.values()), default=1)
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X
    height = PAD * 2 + len(rows) * NODE_H + max(len(rows) - 1, 0) * GAP_Y
    where: dict[str, tuple[float, float]] = {}
    for level, row in rows.items():
        row_width = len(row) * NODE_W + (len(row) - 1) * GAP_X
        x0 = (width - row_width) / 2
        for i, task in enumerate(sorted(row, key=lambda t: t.task_id)):
            where[task.task_id] = (x0 + i * (NODE_W + GAP_X), PAD + level * (NODE_H + GAP_Y))
    parts = [
        f'<svg class="tree" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="task tree">'
    ]
    for parent, child in edges:
        (px, py), (cx, cy) = where[parent], where[child]
        parts.append(
            f'<line class="edge" x1="{px + NODE_W / 2:.0f}" y1="{py + NODE_H:.0f}" '
            f'x2="{cx + NODE_W / 2:.0f}" y2="{cy:.0f}" data-from="{escape(parent)}" data-to="{escape(child)}"/>'
        )
    for task in shown:
        x, y = where[task.task_id]
        tid, state = escape(task.task_id), task.status.value
        parts.append(
            f'<a href="#task-{tid}" class="node state-{state}" data-task="{tid}" data-state="{state}">'
            f"<title>{tid}: {state}, {task.attempts} attempt(s)</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + 16:.0f}">{escape(short_label(task.task_id, task.job_id))}</text>'
            f'<text class="sub" x="{x + NODE_W / 2:.0f}" y="{y + 31:.0f}">{state}</text></a>'
        )
    parts.append("</svg>")
    return Graph(Markup("".join(parts)), edges, depth)
