"""The private typer API the CLI relies on, apart from sisu.compat so that `sisu --help` never
imports dbos. tests/unit/test_compat.py fails loudly when a typer upgrade moves it, and ruff's
banned-api rule (TID251) keeps `typer._click` out of every other module."""

from __future__ import annotations

# typer >= 0.26 vendors click, so its usage errors are not `click.ClickException`s, and typer
# does not re-export the vendored class.
from typer._click.exceptions import ClickException as UsageProblem

__all__ = ["UsageProblem"]
