"""``steward.yaml``: the project spec, as frozen pydantic models.

This package is the single source of truth for the project file. Every model
forbids unknown keys, so a typo is an error that names the key and suggests the
nearest valid one instead of being silently ignored; and every model is frozen
once loaded, so a change is a copy (:meth:`Spec.with_overrides`) that every
holder of the original never sees.

One module per section, each owning its models; stages import them from here,
never the other way round:

* :mod:`~steward.spec.data`: ``storage:`` and ``sources:``;
* :mod:`~steward.spec.features`: ``features:``;
* :mod:`~steward.spec.model`: ``model:`` (estimator, split, search, fairness);
* :mod:`~steward.spec.registry`: ``model.gate:``, the promotion gate;
* :mod:`~steward.spec.security`: API roles and keys of ``serving.auth:``;
* :mod:`~steward.spec.serving`: ``serving:`` (batching, prediction log, rollouts);
* :mod:`~steward.spec.monitoring`: ``monitoring:`` (policies, SLOs, labels);
* :mod:`~steward.spec.llm`: ``llm:`` (gateway, RAG, guardrails, agent);
* :mod:`~steward.spec.root`: :class:`Spec`, the whole file;
* :mod:`~steward.spec.loading`: :func:`find_spec`, :func:`load_spec`, :func:`parse_spec`.
"""

from steward.spec._base import SPEC_FILENAME
from steward.spec.data import CsvOptions, SourceSpec, StorageSpec
from steward.spec.features import (
    FeatureAggregateSpec,
    FeatureEntitySpec,
    FeatureEventsSpec,
    FeatureLabelSpec,
    FeaturesSpec,
    FeatureTableSpec,
)
from steward.spec.llm import (
    AgentSpec,
    BudgetSpec,
    CacheSpec,
    CircuitBreakerSpec,
    GatewayKeySpec,
    GatewaySpec,
    GuardrailsSpec,
    GuardSpec,
    LlmSpec,
    PriceSpec,
    ProviderSpec,
    RagCollectionSpec,
    RagHybridSpec,
    RagSpec,
    RateLimitSpec,
    TeamSpec,
    TracingSpec,
)
from steward.spec.loading import find_spec, load_spec, parse_spec
from steward.spec.model import FairnessSpec, ModelSpec, SearchParamSpec, SearchSpec, SplitSpec
from steward.spec.monitoring import (
    LabelsSpec,
    MonitoringSpec,
    MonitorPolicySpec,
    MonitorScheduleSpec,
    MonitorWindowSpec,
    SloSpec,
)
from steward.spec.registry import GateSpec
from steward.spec.root import Spec
from steward.spec.security import Role, ServingAuthSpec, ServingKeySpec
from steward.spec.serving import (
    BatchingSpec,
    PredictionLogSpec,
    RolloutSloSpec,
    RolloutSpec,
    ServedModelSpec,
    ServingSpec,
    ShadowSpec,
)

__all__ = [
    "SPEC_FILENAME",
    "AgentSpec",
    "BatchingSpec",
    "BudgetSpec",
    "CacheSpec",
    "CircuitBreakerSpec",
    "CsvOptions",
    "FairnessSpec",
    "FeatureAggregateSpec",
    "FeatureEntitySpec",
    "FeatureEventsSpec",
    "FeatureLabelSpec",
    "FeatureTableSpec",
    "FeaturesSpec",
    "GateSpec",
    "GatewayKeySpec",
    "GatewaySpec",
    "GuardSpec",
    "GuardrailsSpec",
    "LabelsSpec",
    "LlmSpec",
    "ModelSpec",
    "MonitorPolicySpec",
    "MonitorScheduleSpec",
    "MonitorWindowSpec",
    "MonitoringSpec",
    "PredictionLogSpec",
    "PriceSpec",
    "ProviderSpec",
    "RagCollectionSpec",
    "RagHybridSpec",
    "RagSpec",
    "RateLimitSpec",
    "Role",
    "RolloutSloSpec",
    "RolloutSpec",
    "SearchParamSpec",
    "SearchSpec",
    "ServedModelSpec",
    "ServingAuthSpec",
    "ServingKeySpec",
    "ServingSpec",
    "ShadowSpec",
    "SloSpec",
    "SourceSpec",
    "Spec",
    "SplitSpec",
    "StorageSpec",
    "TeamSpec",
    "TracingSpec",
    "find_spec",
    "load_spec",
    "parse_spec",
]
