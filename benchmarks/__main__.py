"""Run the benchmarks: ``python -m benchmarks [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys

from . import per_event


def main() -> None:
    """Run every benchmark, print its table, and optionally write all rows as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    args = parser.parse_args()
    results = {"python": sys.version.split()[0], "machine": platform.machine()}
    rows = per_event.run(quick=args.quick)
    print(per_event.report(rows))
    results["per_event"] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
