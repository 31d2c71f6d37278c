"""Run the megagpu command line: ``python -m megagpu``."""

from megagpu import cli

if __name__ == "__main__":
    raise SystemExit(cli.main())
