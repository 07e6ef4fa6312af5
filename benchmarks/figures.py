"""Rows of trionodes-against-baseline figures, and the table they print as.

Each row holds every run of both clients, so that the table can give the median and
the range (lowest to highest) of each, and the ratio of the medians. A goal is one
of:

* ``ratio_max``: the ratio trionodes / baseline of the medians is at most the value
  (times, memory);
* ``ratio_min``: that ratio is at least the value (events per second);
* ``worst_max``: trionodes' worst run is at most the value, in the row's unit (a
  stall or a cancel that must never exceed it).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

# How each unit is written: a scale and a format.
_UNITS = {
    "s": (1.0, "{:.3f} s"),
    "ms": (1.0, "{:,.0f} ms"),
    "events/s": (1.0, "{:,.0f}/s"),
    "B/node": (1.0, "{:,.0f} B"),
}


def row(
    figure: str,
    unit: str,
    trionodes: Sequence[float],
    baseline: Sequence[float] | None,
    goal_kind: str,
    goal_value: float,
    goal: str,
    **extra: Any,
) -> dict[str, Any]:
    """One row: every run of both clients (baseline None when there is none)."""
    assert unit in _UNITS
    assert goal_kind in {"ratio_max", "ratio_min", "worst_max"}
    return {
        "figure": figure,
        "unit": unit,
        "trionodes": list(trionodes),
        "baseline": None if baseline is None else list(baseline),
        "goal": goal,
        "goal_kind": goal_kind,
        "goal_value": goal_value,
        **extra,
    }


def _spread(runs: Sequence[float], unit: str) -> str:
    if not runs:
        return "n/a"
    scale, form = _UNITS[unit]
    median = form.format(statistics.median(runs) * scale)
    if len(runs) == 1:
        return median
    low, high = (form.format(value * scale).split()[0] for value in (min(runs), max(runs)))
    return f"{median} ({low}-{high})"


def ratio(entry: dict[str, Any]) -> float | None:
    """Median of trionodes' runs over the median of the baseline's."""
    if not (entry["trionodes"] and entry["baseline"]):
        return None
    return statistics.median(entry["trionodes"]) / statistics.median(entry["baseline"])


def met(entry: dict[str, Any]) -> bool | None:
    """Whether the row meets its goal (None when it cannot be judged)."""
    kind, value = entry["goal_kind"], entry["goal_value"]
    if not entry["trionodes"]:
        return None
    if kind == "worst_max":
        return bool(max(entry["trionodes"]) <= value)
    found = ratio(entry)
    if found is None:
        return None
    return found <= value if kind == "ratio_max" else found >= value


def cells(entry: dict[str, Any]) -> list[str]:
    """The row's cells: figure, trionodes, baseline, ratio, goal, met."""
    found = ratio(entry)
    verdict = met(entry)
    return [
        entry["figure"],
        _spread(entry["trionodes"], entry["unit"]),
        "" if not entry["baseline"] else _spread(entry["baseline"], entry["unit"]),
        "" if found is None else f"{found:.2f}x",
        entry["goal"],
        {True: "met", False: "not met", None: ""}[verdict],
    ]


HEADER = ["figure", "trionodes", "grpc.aio + upb + dict", "ratio", "goal", ""]


def table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` under ``title``: median (range) of the runs."""
    body = [HEADER, *(cells(entry) for entry in rows)]
    widths = [max(len(line[column]) for line in body) for column in range(len(HEADER))]
    lines = [title]
    for line in body:
        lines.append(
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    runs = {len(entry["trionodes"]) for entry in rows}
    lines.append(f"median (lowest-highest) of {'/'.join(map(str, sorted(runs)))} runs each")
    return "\n".join(lines)


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The same rows as a Markdown table, for docs/performance.md."""
    lines = [
        "| " + " | ".join(["measure", *HEADER[1:-1], "goal met"]) + " |",
        "|---|---:|---:|---:|---|---|",
    ]
    for entry in rows:
        lines.append("| " + " | ".join(cells(entry)) + " |")
    return "\n".join(lines)
