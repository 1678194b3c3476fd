"""Outside systems behind small Protocols, each with an embedded default and a scale-out implementation.

Stages import :mod:`steward.backends.base` only and get opened backends from the
:class:`~steward.workspace.Workspace`; :mod:`steward.backends.factory` (called by the
workspace) picks the concrete class from ``steward.yaml``. MLflow is one of them: the
model registry and run tracker (``mlflow_*`` modules, the only code that imports ``mlflow``),
with its errors translated into Steward's in :mod:`steward.backends.mlflow_errors`.
"""
