"""Benchmarks of flow-reconciler, each beside a git baseline measured in the same run.

Run ``python -m bench --flows N``; see README "Benchmarks".
"""
