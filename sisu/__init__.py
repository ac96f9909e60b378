"""sisu: a durable intent engine with a CLI-first operator surface."""

from __future__ import annotations

__version__ = "0.1.0"
