"""`python -m studio ...`: the command line (see studio/cli.py)."""

from studio.cli import main

raise SystemExit(main())
