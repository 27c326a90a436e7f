"""Benchmarks of supervisor_slapos against what a SlapOS node does today.

Run ``python -m bench --help``. Each benchmark measures the plugin and the
baseline in the same run, on the same machine, and reports their ratio;
the results go to BENCHMARKS.md.
"""
