"""Benchmarks of s2intake (not part of the installed package): see ``bench/README.md``."""
