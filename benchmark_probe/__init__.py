"""benchmark_probe: the host probe machine owners run (inventory, micro-benchmarks, proof of throughput)."""

__version__ = "0.1.0"
