"""Benchmarks for Ankomst (issue 6): scripts a person runs with `make bench`, not timed tests."""
