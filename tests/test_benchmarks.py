"""The benchmarks against a hand-written grpc.aio client run, at a tiny size.

A smoke test, not a measurement: each module measures both clients once against the
benchmark Curator (another process) and prints its table. The baseline needs the
``bench`` dependency group (grpcio, protobuf, grpcio-tools), which the test
environment does not install: then these tests are skipped.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("google.protobuf")
pytest.importorskip("grpc_tools")

# Module, and its Config's arguments: a few hundred nodes, one run or point each.
TINY: dict[str, dict[str, Any]] = {
    "versus_grpcio": {
        "sync_sizes": (300,),
        "rounds": 1,
        "stream_nodes": 100,
        "stream_events": 50,
        "memory_nodes": 300,
    },
    "responsiveness": {"nodes": 300, "rounds": 1},
    "cancel_latency": {"nodes": 300, "points": 1},
}


@pytest.mark.parametrize("name", list(TINY))
def test_benchmark_module_runs(name: str) -> None:
    # Imported by name: the benchmarks are not type-checked with the tests.
    module = importlib.import_module(f"benchmarks.{name}")
    rows = module.run(config=module.Config(**TINY[name]))
    assert rows
    for row in rows:
        assert row["trionodes"]
        assert row["baseline"] is not None
    table = module.report(rows)
    assert "trionodes" in table
    assert "grpc.aio" in table
