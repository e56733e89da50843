"""Benchmarks of the whole running stack; each script prints its figures."""
