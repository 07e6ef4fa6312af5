"""The sans-I/O core: every protocol decision, as plain functions and state machines.

Nothing in this package does I/O, reads a clock or imports an async or gRPC library
(``tests/core/test_purity.py`` enforces it); the watch tasks in :mod:`trionodes._watch`
feed it what arrived and the time, and do what it says.

* :mod:`.wire`: splits a ``WatchEvent`` at the protobuf wire level, and encodes one.
* :mod:`.decode`: decodes a ``Node`` fast, to the same objects as ``Node.parse``.
* :mod:`.engine`: the cluster, each follower's view and one tracked node, fed events.
* :mod:`.frozenmap`: the immutable node maps the engine hands out as snapshots.
* :mod:`.retry`: when to retry, how long to wait, when to give up.
* :mod:`.stream`: what a stream's end or silence means in each phase.
"""
