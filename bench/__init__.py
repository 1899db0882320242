"""hopbench: measure Kubernetes container runtime stacks hop by hop."""

__version__ = "0.1.0"

# Version of the results folder layout (samples.parquet columns, meta.json keys).
# Bump it with an upgrade function in bench.controller.results when the layout changes.
RESULTS_SCHEMA_VERSION = 1
