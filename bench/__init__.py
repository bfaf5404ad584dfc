"""Benchmarks: scripts that print their figures (`python -m bench.<name>`), never tests.

Each measures what it compares side by side in one run, so a ratio holds on a noisy machine.
"""
