"""megagpu: scheduling of AI workloads on mixed accelerators with a learned policy."""

__version__ = "0.1.0"
