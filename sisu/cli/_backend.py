"""The service-layer backend for one CLI command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sisu.service.backend import Backend


@contextmanager
def backend() -> Iterator[Backend]:
    from sisu.cli._settings import database_url, settings
    from sisu.service.backend import Backend

    s = settings()
    b = Backend.from_settings(database_url(s), s, pool_size=2, pooled=False)
    try:
        yield b
    finally:
        b.close()
