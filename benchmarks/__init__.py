"""Framework-overhead benchmarks: ``python -m benchmarks.run`` (``make bench``) prints one table of ratios.

Every row is measured in the same run as its baseline, a bare Tornado HTTPS handler with the same TLS
settings, so that the ratios stay meaningful on a small, shared machine.
"""
