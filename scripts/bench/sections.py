"""The registry: which sections exist, in the order they run and appear in the table and chart.

A new section is a module ``section_<key>.py`` that defines ``SECTION`` (see ``base.Section``),
plus its key below. Modules are imported by name so that the list is the one line to change;
their top level imports no SDK module, so the parent process stays light.
"""

from __future__ import annotations

import importlib

from .base import Section

ORDER = ("a", "b", "c", "d", "e", "f")


def load() -> dict[str, Section]:
    sections: dict[str, Section] = {}
    for key in ORDER:
        section = importlib.import_module(f"{__package__}.section_{key}").SECTION
        assert section.key == key, f"section_{key}.py defines section {section.key!r}"
        sections[key] = section
    return sections


def targets(sections: dict[str, Section]) -> dict[str, float]:
    """Every section's targets, in section order: ``bench.json``'s ``targets``."""
    return {name: value for section in sections.values() for name, value in section.targets.items()}
