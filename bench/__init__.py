"""On-demand benchmarks of the platform: `python -m bench [dispatch|overhead|fanout|all]` (see docs/benchmarks.md)."""
