"""Benchmarks of the worker on the local stack: `python -m bench` (`make bench`).

One run measures, on fresh topics and an empty state: the sustained throughput of one worker
over a simulated backlog (with its CPU, memory and changelog cost), open-loop latency at fixed
offered rates, the ceilings of plain Python and of Kafka's own perf tools on the same bytes, and
recovery times. docs/benchmarks.md explains every figure.
"""
