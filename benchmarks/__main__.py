"""Run the benchmarks: ``python -m benchmarks [--quick] [--json PATH] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import platform
import sys
import time
from types import ModuleType

from . import (
    cancel_latency,
    control_plane,
    initial_sync,
    per_event,
    responsiveness,
    resync,
    slow_follower,
    throughput,
    versus_grpcio,
)

BENCHMARKS: dict[str, ModuleType] = {
    "per_event": per_event,
    "throughput": throughput,
    "initial_sync": initial_sync,
    "slow_follower": slow_follower,
    "resync": resync,
    "control_plane": control_plane,
    # Against a hand-written grpc.aio + protobuf client: need the `bench` group.
    "versus_grpcio": versus_grpcio,
    "responsiveness": responsiveness,
    "cancel_latency": cancel_latency,
}


def main() -> None:
    """Run the chosen benchmarks, print their tables, and optionally write them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and events")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), help="run only these"
    )
    args = parser.parse_args()
    # The resync benchmark fails streams on purpose; each retry logs a warning.
    logging.getLogger("trionodes").setLevel(logging.ERROR)
    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "quick": args.quick,
    }
    for name in args.only:
        module = BENCHMARKS[name]
        started = time.perf_counter()
        rows = module.run(quick=args.quick)
        print(module.report(rows))
        print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
        results[name] = rows
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
