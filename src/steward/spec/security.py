"""Access to the model server: API roles and keys (``serving.auth:``). Secrets never go in the spec."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steward.spec._base import EnvVarName, _Strict

__all__ = ["Role", "ServingAuthSpec", "ServingKeySpec"]


Role = Literal["viewer", "operator", "admin"]
"""API roles, lowest first: viewer (read) < operator (predict) < admin (rollouts, aliases, reloads)."""


class ServingKeySpec(_Strict):
    """An API key of the model server: the secret is read from ``key_env``, never written in the spec.

    Attributes:
        key_env: Environment variable holding the key.
        role: ``viewer`` (read), ``operator`` (predict) or ``admin`` (rollouts, aliases, reloads).
    """

    key_env: EnvVarName
    role: Role = "operator"


class ServingAuthSpec(_Strict):
    """API keys with roles. Keys also come from ``STEWARD_API_KEYS`` (``key:role,...``) or a secrets file.

    Attributes:
        required: Refuse requests without a valid key (off only for local experiments).
        keys: Key name → key (secret from an environment variable).
        keys_file: A secrets file (YAML or JSON mapping of key → role), relative to ``steward.yaml``.
        public_metrics: Serve ``/metrics`` without a key (Prometheus scrapes inside the cluster).
    """

    required: bool = True
    keys: dict[str, ServingKeySpec] = Field(default_factory=dict)
    keys_file: str | None = None
    public_metrics: bool = True
