"""`python -m diagnosis ...`: the diagnosis command line (see diagnosis/cli.py)."""

from diagnosis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
