"""`python -m bench.node`: the node agent (bench.node.protocol)."""

import sys

from bench.node.protocol import main

sys.exit(main())
