"""The harness's own benchmarks: each script prints its figures beside their goals (see README.md)."""
