"""Gateway errors: each a :class:`~steward.errors.StewardError` with a stable code and HTTP status."""

from __future__ import annotations

from typing import Any

from steward.errors import LimitExceeded, NotFound, StewardError, ValidationFailed

__all__ = [
    "BudgetExceeded",
    "InvalidOutput",
    "ProviderError",
    "ProvidersRateLimited",
    "RateLimited",
    "UnknownModel",
    "UpstreamRejected",
]


class RateLimited(LimitExceeded):
    """A key's requests- or tokens-per-minute limit is reached (HTTP 429)."""

    default_code = "limit.rate"
    http_status = 429


class BudgetExceeded(LimitExceeded):
    """The request would take a key's or team's budget over its cap (HTTP 402)."""

    default_code = "limit.budget"
    http_status = 402


class UnknownModel(NotFound):
    """The requested model is neither an alias nor a ``provider:model`` of a configured provider."""

    default_code = "llm.unknown_model"


class ProviderError(StewardError):
    """An upstream provider failed (error status, timeout, transport error, broken stream).

    Attributes:
        retryable: Whether retrying / falling back may help (5xx, 408, 429, timeouts, transport).
        status: The upstream HTTP status, when there was one.
        retry_after: Seconds the upstream asked us to wait (``Retry-After``), when given.
    """

    default_code = "llm.provider"
    exit_code = 7
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint, details=details)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class ProvidersRateLimited(ProviderError):
    """Every provider of the chain answered 429 (HTTP 429; ``retry_after_s`` in details when an upstream gave one).

    The gateway is not broken, only out of upstream capacity: clients should back off and retry, as after
    OpenAI's own ``rate_limit_exceeded``.
    """

    default_code = "llm.providers_rate_limited"
    http_status = 429


class UpstreamRejected(StewardError):
    """The provider rejected the request itself (a 4xx other than 408/429): retrying elsewhere would not help."""

    default_code = "llm.upstream_rejected"
    exit_code = 2
    http_status = 400


class InvalidOutput(ValidationFailed):
    """The model's answer does not match the requested JSON schema, even after one repair attempt."""

    default_code = "llm.invalid_output"
    http_status = 502
