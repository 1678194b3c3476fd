"""Outside systems behind small Protocols, each with an embedded default and a scale-out implementation.

Stages import :mod:`steward.backends.base` only; :mod:`steward.backends.factory`
picks the concrete class from ``steward.yaml``.
"""
