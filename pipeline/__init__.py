"""Compositions of stages across all three evaluation axes (the demo, seed replicates).

The only package that may import `core`, `judge` and `human_eval` together; the stages themselves stay in
their own folders and know nothing of it.
"""
