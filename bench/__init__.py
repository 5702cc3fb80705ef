"""Benchmarks (`make bench`): each module's run() measures crmsync against a baseline in the same run."""
