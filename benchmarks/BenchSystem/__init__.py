"""Benchmark "system": the service handlers the benchmark server runs."""
