"""`sisu serve`: run the api-shim under uvicorn."""

from __future__ import annotations

import ipaddress

from sisu.config import Settings
from sisu.errors import ValidationFailed
from sisu.service.backend import Backend


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(url: str, settings: Settings, *, host: str, port: int, api_token: str | None) -> None:
    if not is_loopback(host) and not api_token:
        raise ValidationFailed(
            f"refusing to bind {host}: a non-loopback address needs SISU_API_TOKEN set, and then "
            "every request must carry `Authorization: Bearer <token>`",
            details={"host": host},
        )
    import uvicorn

    from sisu.api.app import create_app

    backend = Backend.from_settings(url, settings, pool_size=10)
    app = create_app(backend, settings, api_token=api_token)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        backend.close()
