"""Benchmarks of trionodes, each reported against a baseline measured in the same run."""
