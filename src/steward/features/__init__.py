"""Features: one definition for training (point-in-time joins) and serving (online store).

Definitions live in ``steward.yaml`` under ``features:``. :func:`build_features`
writes gold tables; :func:`build_training_set` joins labelled events with them
point-in-time (every input pinned); :func:`materialize` fills the online store
and :func:`get_online_features` reads it for serving, through the same code.
"""

from steward._primitives import parse_duration
from steward.features.definitions import FEATURE_TIME, FeatureSet, FeatureTable
from steward.features.store import (
    BuildResult,
    MaterializeResult,
    Pins,
    build_features,
    build_training_set,
    feature_set,
    get_online_features,
    list_feature_tables,
    materialize,
    online_store,
)
from steward.features.training_set import TrainingSet

__all__ = [
    "FEATURE_TIME",
    "BuildResult",
    "FeatureSet",
    "FeatureTable",
    "MaterializeResult",
    "Pins",
    "TrainingSet",
    "build_features",
    "build_training_set",
    "feature_set",
    "get_online_features",
    "list_feature_tables",
    "materialize",
    "online_store",
    "parse_duration",
]
