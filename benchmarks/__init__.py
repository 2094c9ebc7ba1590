"""ringmesh benchmarks: each module runs with ``python -m benchmarks.NAME`` and prints figures."""
