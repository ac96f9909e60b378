"""The one error hierarchy: every failure an operator can see has a code, an HTTP status and an
exit code, so the CLI and the api-shim report it the same way."""

from __future__ import annotations

from typing import Any, ClassVar


class SisuError(Exception):
    """Something went wrong inside sisu."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def envelope(self) -> dict[str, Any]:
        """The machine-readable error, the same for HTTP bodies and `--json` output."""
        return {"error": self.code, "message": self.message, "details": self.details}


class ValidationFailed(SisuError):
    """The input does not match the contract."""

    code = "validation_error"
    http_status = 400
    exit_code = 2


class ConfirmationRequired(SisuError):
    """This command destroys data; pass --yes to confirm."""

    code = "confirmation_required"
    http_status = 400
    exit_code = 2


class NotFound(SisuError):
    """No such object."""

    code = "not_found"
    http_status = 404
    exit_code = 4


class InvalidState(SisuError):
    """The object is not in a state that allows this operation."""

    code = "invalid_state"
    http_status = 409
    exit_code = 5


class QueuePolicyViolation(SisuError):
    """The run asks for more than the queue policy allows."""

    code = "queue_policy_violation"
    http_status = 400
    exit_code = 2


class DuplicateRun(SisuError):
    """A run with this deduplication id is already queued or running."""

    code = "duplicate_run"
    http_status = 409
    exit_code = 5


class IdempotencyConflict(SisuError):
    """This Idempotency-Key was already used with a different request body."""

    code = "idempotency_conflict"
    http_status = 409
    exit_code = 5


class DatabaseUnavailable(SisuError):
    """The database cannot be reached."""

    code = "db_unavailable"
    http_status = 503
    exit_code = 3


class EmbeddedServerError(SisuError):
    """The embedded PostgreSQL server could not be started or stopped."""

    code = "embedded_server_error"
    exit_code = 3


class MigrationError(SisuError):
    """A schema migration failed; nothing of that migration was applied."""

    code = "migration_failed"
    exit_code = 3


class ToolMissing(SisuError):
    """A required external tool is not installed."""

    code = "tool_missing"
    exit_code = 6


class DrillFailed(SisuError):
    """A drill finished but its oracles did not hold."""

    code = "drill_failed"
    exit_code = 1


class WorkerFailed(SisuError):
    """A worker process could not be started or died unexpectedly."""

    code = "worker_failed"
    exit_code = 1


class PortInUse(SisuError):
    """The port is already taken by another process."""

    code = "port_in_use"
    exit_code = 1


class TimedOut(SisuError):
    """Gave up waiting."""

    code = "timed_out"
    exit_code = 124


class PayloadTooLarge(SisuError):
    """The request body is larger than the api-shim accepts (SISU_MAX_BODY_BYTES)."""

    code = "payload_too_large"
    http_status = 413
    exit_code = 2


class UnsupportedMediaType(SisuError):
    """The request body is not JSON: send it with `Content-Type: application/json`."""

    code = "unsupported_media_type"
    http_status = 415
    exit_code = 2


class Unauthorized(SisuError):
    """Missing or wrong bearer token: send `Authorization: Bearer <SISU_API_TOKEN>`."""

    code = "unauthorized"
    http_status = 401
    exit_code = 2
