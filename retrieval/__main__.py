"""`python -m retrieval ...`: the engine's command line (see `retrieval/cli.py`)."""

from retrieval.cli import main

raise SystemExit(main())
