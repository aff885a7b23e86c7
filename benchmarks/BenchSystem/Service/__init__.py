"""Service handlers of the benchmark system."""
