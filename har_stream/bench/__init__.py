"""Benchmarks behind ``har-stream bench``: figures with the machine they came from, comparisons side by side."""
