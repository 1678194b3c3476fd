"""One exception tree for all of Steward, each error with a stable code.

Every error a user can see is a :class:`StewardError`. The ``code`` is stable
(tests, the API's problem+json ``type`` and the CLI's exit codes key on it);
the message may improve over time. ``hint`` says how to fix it.

Tree::

    StewardError
    ├── SpecError                  steward.yaml is invalid or missing      (spec.*)
    ├── ContractError              a contract file is invalid               (contract.*)
    │   └── BreakingContractChange a contract diff found a breaking change  (contract.breaking)
    ├── DataError                  the lake or its data                     (data.*)
    │   ├── TableNotFound          no such table / layer                    (data.table_not_found)
    │   ├── VersionNotFound        no such table version                    (data.version_not_found)
    │   ├── IngestError            a landing file cannot be read at all     (data.ingest)
    │   └── ArtifactRejected       a model version fails verification (422) (registry.artifact_*, registry.signature_*)
    ├── MetadataError              the metadata store                       (metadata.*)
    │   └── LockHeld               another process holds a lock             (metadata.lock_held)
    ├── BackendUnavailable         a configured server is unreachable       (backend.unavailable)
    ├── NotFound                   a named thing does not exist             (not_found)
    ├── Conflict                   the request conflicts with current state (conflict)
    │   ├── GateFailed             the promotion gate refused a challenger  (registry.gate_failed)
    │   └── NotReproducible        a retrained run predicts differently     (training.not_reproducible)
    ├── ValidationFailed           request data is invalid (fields named)   (validation.failed)
    ├── AuthError                  missing or bad credentials               (auth.unauthenticated)
    │   └── Forbidden              the caller's role is not enough          (auth.forbidden)
    └── LimitExceeded              a budget, rate limit or bound is hit     (limit.*)

Edges map errors, never tracebacks: the CLI prints one red line and exits with
:attr:`StewardError.exit_code`; the API answers RFC 9457 problem+json with
:attr:`StewardError.http_status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ArtifactRejected",
    "AuthError",
    "BackendUnavailable",
    "BreakingContractChange",
    "Conflict",
    "ContractError",
    "DataError",
    "Forbidden",
    "GateFailed",
    "IngestError",
    "LimitExceeded",
    "LockHeld",
    "MetadataError",
    "MissingExtra",
    "NotFound",
    "NotReproducible",
    "SpecError",
    "StewardError",
    "TableNotFound",
    "ValidationFailed",
    "VersionNotFound",
    "problem_body",
]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
"""The media type of an RFC 9457 problem body."""

_PROBLEM_TYPE_BASE: Final = "https://steward.dev/errors/"


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    hint: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one builder of an RFC 9457 problem+json body.

    Args:
        status: The HTTP status.
        code: Steward's stable error code; also the ``title`` and the last part of ``type``.
        detail: What went wrong, for a person.
        hint: How to fix it, when known.
        instance: The request path the problem occurred on.
        extra: Members added last (``errors`` naming every bad field, per-model state, ...).
    """
    body: dict[str, Any] = {"type": f"{_PROBLEM_TYPE_BASE}{code}", "title": code, "status": status, "detail": detail, "code": code}
    if hint:
        body["hint"] = hint
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return body


class StewardError(Exception):
    """Base of every error Steward raises on purpose.

    Attributes:
        code: Stable machine-readable code, e.g. ``"spec.invalid"``.
        message: What went wrong, for a person.
        hint: How to fix it, when we know.
        details: Structured extras (field names, values) for APIs.
    """

    default_code: ClassVar[str] = "steward.error"
    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.hint = hint
        self.details: dict[str, Any] = details or {}

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """Render as an RFC 9457 problem+json body (see :func:`problem_body`)."""
        return problem_body(self.http_status, self.code, self.message, hint=self.hint, instance=instance, extra=self.details)


class SpecError(StewardError):
    """``steward.yaml`` is missing or invalid."""

    default_code = "spec.invalid"
    exit_code = 2
    http_status = 400


class ContractError(StewardError):
    """A data contract file is invalid."""

    default_code = "contract.invalid"
    exit_code = 2
    http_status = 400


class BreakingContractChange(ContractError):
    """``steward contract diff`` found at least one breaking change."""

    default_code = "contract.breaking"
    exit_code = 3
    http_status = 409


class DataError(StewardError):
    """A problem with the lake or the data in it."""

    default_code = "data.error"
    exit_code = 4
    http_status = 500


class ArtifactRejected(DataError):
    """A registered model version fails verification (hashes, manifest signature, or it does not load).

    422: the request is well formed, but its target cannot be served; nothing was changed.
    """

    default_code = "registry.artifact_mismatch"
    http_status = 422


class TableNotFound(DataError):
    """The named table does not exist (yet)."""

    default_code = "data.table_not_found"
    http_status = 404


class VersionNotFound(DataError):
    """The table exists but not at the asked version."""

    default_code = "data.version_not_found"
    http_status = 404


class IngestError(DataError):
    """A landing file cannot be read at all (not a single row)."""

    default_code = "data.ingest"
    http_status = 422


class MetadataError(StewardError):
    """The metadata store failed or is inconsistent."""

    default_code = "metadata.error"
    exit_code = 5


class LockHeld(MetadataError):
    """Another process holds the named lock."""

    default_code = "metadata.lock_held"
    exit_code = 6
    http_status = 409


class BackendUnavailable(StewardError):
    """A configured outside server (PostgreSQL, Redis, ...) cannot be reached."""

    default_code = "backend.unavailable"
    exit_code = 7
    http_status = 503


class MissingExtra(StewardError):
    """The spec asks for a backend whose client package is not installed (``pip install 'steward[EXTRA]'``)."""

    default_code = "install.missing_extra"
    exit_code = 2


class NotFound(StewardError):
    """A named object (model, run, batch, ...) does not exist."""

    default_code = "not_found"
    exit_code = 8
    http_status = 404


class Conflict(StewardError):
    """The request conflicts with the current state."""

    default_code = "conflict"
    exit_code = 9
    http_status = 409


class GateFailed(Conflict):
    """The promotion gate refused a challenger; ``details["checks"]`` lists every check."""

    default_code = "registry.gate_failed"
    exit_code = 12
    http_status = 409


class NotReproducible(Conflict):
    """Retraining a run from its pinned inputs did not give the same validation predictions.

    ``details`` holds the comparison (hashes of the predictions, code and environment, then and now).
    """

    default_code = "training.not_reproducible"
    exit_code = 13
    http_status = 409


class ValidationFailed(StewardError):
    """Input data is invalid; ``details["errors"]`` names every bad field."""

    default_code = "validation.failed"
    exit_code = 2
    http_status = 422


class AuthError(StewardError):
    """Credentials are missing or wrong."""

    default_code = "auth.unauthenticated"
    exit_code = 10
    http_status = 401


class Forbidden(AuthError):
    """The caller is known but its role is not enough."""

    default_code = "auth.forbidden"
    http_status = 403


class LimitExceeded(StewardError):
    """A budget, a rate limit or a run bound was hit."""

    default_code = "limit.exceeded"
    exit_code = 11
    http_status = 429
