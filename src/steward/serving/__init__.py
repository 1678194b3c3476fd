"""Serving: model runtime (verified loading, validation, micro-batching), the pure traffic router,
rollouts, the prediction log and batch scoring.

Heavy imports (lightgbm, ray) happen inside the functions that need them; the registry (MLflow) is reached
through the workspace's model registry.
"""

from steward.serving.router import Route, RoutePolicy, StepDecision, StepRules, VariantStats, bucket, evaluate_step, route

__all__ = ["Route", "RoutePolicy", "StepDecision", "StepRules", "VariantStats", "bucket", "evaluate_step", "route"]
