"""Where the `sql/` files are: inside the wheel when installed, the checkout in development."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


def sql_dir() -> Traversable:
    packaged = resources.files("sisu") / "_sql"
    if packaged.is_dir():
        return packaged
    # An editable install serves the package from the checkout, where sql/ sits beside sisu/.
    return Path(__file__).resolve().parents[2] / "sql"
