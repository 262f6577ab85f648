"""Experiment scripts for nica: each is runnable as a script and importable for tests."""
