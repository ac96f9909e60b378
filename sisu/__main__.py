"""`python -m sisu` runs the CLI."""

from __future__ import annotations

from sisu.cli import main

if __name__ == "__main__":
    main()
