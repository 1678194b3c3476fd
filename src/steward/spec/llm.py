"""The ``llm:`` section: the gateway (providers, keys, budgets, cache), RAG, guardrails and the agent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from steward.spec._base import EnvVarName, _Strict

__all__ = [
    "AgentSpec",
    "BudgetSpec",
    "CacheSpec",
    "CircuitBreakerSpec",
    "GatewayKeySpec",
    "GatewaySpec",
    "GuardSpec",
    "GuardrailsSpec",
    "LlmSpec",
    "PriceSpec",
    "ProviderSpec",
    "RagCollectionSpec",
    "RagHybridSpec",
    "RagSpec",
    "RateLimitSpec",
    "TeamSpec",
    "TracingSpec",
]


class ProviderSpec(_Strict):
    """One upstream LLM provider of the gateway.

    Attributes:
        kind: ``openai`` (any OpenAI-compatible HTTP endpoint: vLLM, Ollama, OpenAI, ...),
            ``anthropic`` (the Messages API) or ``local`` (offline, extractive, deterministic).
        base_url: Endpoint root, e.g. ``http://127.0.0.1:8001/v1`` (not used by ``local``).
        api_key_env: Name of the environment variable holding the provider's API key.
        timeout_s: Per-request timeout (connect, and between two streamed chunks).
        max_retries: Retries on the same provider before falling back to the next one.
    """

    kind: Literal["openai", "anthropic", "local"] = "openai"
    base_url: str | None = None
    api_key_env: EnvVarName | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)


class BudgetSpec(_Strict):
    """A spending cap per period, in tokens and/or US dollars (null = no cap)."""

    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)
    period: Literal["day", "month"] = "month"


class RateLimitSpec(_Strict):
    """Per-minute request and token caps (null = no cap)."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)


class GatewayKeySpec(_Strict):
    """A gateway key: the secret is read from ``key_env``, never written in the spec.

    Attributes:
        key_env: Environment variable holding the bearer token.
        team: Team whose budget this key also draws from.
        role: ``user`` or ``admin``.
    """

    key_env: EnvVarName
    team: str | None = None
    role: Literal["user", "admin"] = "user"
    budget: BudgetSpec | None = None
    rate_limit: RateLimitSpec | None = None


class TeamSpec(_Strict):
    """A team's shared budget and per-minute rate limit (counted over every key of the team)."""

    budget: BudgetSpec | None = None
    rate_limit: RateLimitSpec | None = None


class PriceSpec(_Strict):
    """Price of one model in US dollars per one million tokens."""

    input_per_1m: float = Field(default=0.0, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)


class CacheSpec(_Strict):
    """Response cache: exact (normalised request hash) and semantic (embedding similarity)."""

    exact: bool = True
    semantic: bool = False
    threshold: float = Field(default=0.95, gt=0, le=1)
    ttl_s: float = Field(default=3600.0, gt=0)


class CircuitBreakerSpec(_Strict):
    """Open a provider's circuit after ``failures`` consecutive failures, for ``cooldown_s``."""

    failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)


class TracingSpec(_Strict):
    """Spans go to ``ROOT/traces.db``; set ``otlp_endpoint`` to also export over OTLP/HTTP."""

    otlp_endpoint: str | None = None


class GatewaySpec(_Strict):
    """The OpenAI-compatible gateway: providers, aliases, keys, budgets, cache, prices.

    Attributes:
        providers: Provider name → provider. A ``local`` provider always exists.
        aliases: Model alias → ordered fallback chain of ``provider:model`` targets.
        keys: Key name → key (its secret comes from an environment variable).
        teams: Team name → team budget and rate limit (shared by the team's keys).
        prices: ``provider:model`` (or bare model) → price per 1M input/output tokens.
        prompts_dir: Directory of versioned prompt files, relative to ``steward.yaml``.
        default_max_tokens: Completion tokens reserved against budgets when a request sets no ``max_tokens``.
    """

    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    keys: dict[str, GatewayKeySpec] = Field(default_factory=dict)
    teams: dict[str, TeamSpec] = Field(default_factory=dict)
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    tracing: TracingSpec = Field(default_factory=TracingSpec)
    prompts_dir: str = "prompts"
    default_max_tokens: int = Field(default=512, ge=1)


class RagCollectionSpec(_Strict):
    """One RAG collection (a corpus indexed together).

    Attributes:
        kind: ``stdlib`` (Python standard library docstrings, plus Debian's python3.11-doc
            HTML when installed) or ``path`` (a directory of Markdown, HTML and text files).
        modules: For ``stdlib``: a list of module names, or ``all`` for the built-in broad list.
        path: For ``path``: the directory, relative to ``steward.yaml``.
        include_html: For ``stdlib``: also index the python3.11-doc HTML when it is installed.
    """

    kind: Literal["stdlib", "path"] = "path"
    modules: list[str] | Literal["all"] = "all"
    path: str | None = None
    include_html: bool = True


class RagHybridSpec(_Strict):
    """Weights of the two retrievers in reciprocal rank fusion."""

    vector_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    rrf_k: int = Field(default=60, ge=1)


def _default_collections() -> dict[str, RagCollectionSpec]:
    return {"stdlib": RagCollectionSpec(kind="stdlib"), "docs": RagCollectionSpec(kind="path", path="docs")}


class RagSpec(_Strict):
    """Retrieval-augmented generation: corpora, chunking, embedding, retrieval.

    Attributes:
        collections: Named collections; default ``stdlib`` and ``docs`` (``docs/`` of the project).
        default_collection: The collection ``ask`` searches when none is named.
        chunk_tokens: Window size in model tokens (capped at the embedder's 254 usable tokens).
        overlap_tokens: Tokens shared by consecutive windows of one section.
        top_k: Chunks cited per answer.
        min_score: Calibrated cosine similarity below which the answer is "I don't know".
        hybrid: Reciprocal rank fusion weights.
        model: Gateway alias for generated answers; ``None`` answers extractively, offline.
        gateway_key: The ``llm.gateway.keys`` entry whose budget RAG calls are charged to
            (default: the first declared key).
    """

    collections: dict[str, RagCollectionSpec] = Field(default_factory=_default_collections)
    default_collection: str = "stdlib"
    chunk_tokens: int = Field(default=256, ge=16, le=4096)
    overlap_tokens: int = Field(default=32, ge=0)
    top_k: int = Field(default=5, ge=1, le=50)
    min_score: float = Field(default=0.35, ge=-1.0, le=1.0)
    hybrid: RagHybridSpec = Field(default_factory=RagHybridSpec)
    model: str | None = None
    gateway_key: str | None = None


class GuardSpec(_Strict):
    """One guard and what to do when it fires.

    Attributes:
        enabled: Run this guard at all.
        action: ``block`` (refuse the request), ``redact`` (mask the finding and go on) or
            ``flag`` (go on, and report the finding with the answer).
        threshold: For the injection classifier: the probability at or above which it fires.
        min_support: For grounding: the share of answer sentences that must be supported.
    """

    enabled: bool = True
    action: Literal["block", "redact", "flag"] = "flag"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    min_support: float = Field(default=0.5, ge=0.0, le=1.0)


class GuardrailsSpec(_Strict):
    """Input and output guards, each with an action."""

    injection: GuardSpec = Field(default_factory=lambda: GuardSpec(action="block", threshold=0.5))
    pii_input: GuardSpec = Field(default_factory=lambda: GuardSpec(action="redact"))
    pii_output: GuardSpec = Field(default_factory=lambda: GuardSpec(action="redact"))
    grounding: GuardSpec = Field(default_factory=lambda: GuardSpec(action="flag", min_support=0.5))


class AgentSpec(_Strict):
    """The bounded operations agent: the model it plans with and the bounds of every run.

    Attributes:
        model: Gateway alias (or ``provider:model``) the agent plans with.
        gateway_key: Name of a key in ``llm.gateway.keys`` whose budget the agent spends
            (default: an internal ``agent`` key without a budget of its own).
        max_steps: Model turns per run (plan → act → observe counts as one).
        max_tokens: Prompt + completion tokens per run.
        max_usd: Spend per run in US dollars.
        max_seconds: Wall time per run.
        approval_ttl_s: How long a granted approval token stays valid.
        max_result_chars: Tool output handed back to the model is cut to this many characters.
    """

    model: str = "chat-default"
    gateway_key: str | None = None
    max_steps: int = Field(default=8, ge=1, le=200)
    max_tokens: int = Field(default=20_000, ge=1)
    max_usd: float = Field(default=0.5, ge=0)
    max_seconds: float = Field(default=120.0, gt=0)
    approval_ttl_s: float = Field(default=900.0, gt=0)
    max_result_chars: int = Field(default=4_000, ge=100)


class LlmSpec(_Strict):
    """The LLM half: gateway, RAG, guardrails and the agent."""

    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    rag: RagSpec = Field(default_factory=RagSpec)
    guardrails: GuardrailsSpec = Field(default_factory=GuardrailsSpec)
    agent: AgentSpec = Field(default_factory=AgentSpec)
