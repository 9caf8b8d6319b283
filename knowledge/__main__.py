"""`python -m knowledge ...`: the knowledge store command line (see knowledge/cli.py)."""

from knowledge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
