"""Benchmarks: transport side by side with its peers, in one process, on one machine."""
