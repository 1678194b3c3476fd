"""Training: pinned training sets in, tracked and registered models out.

Heavy libraries (LightGBM, scikit-learn, Optuna, SHAP, Ray) are
imported inside the functions that use them; runs are tracked through the workspace's run tracker (MLflow).
"""

from steward.training.cards import read_card
from steward.training.core import ReproduceResult, TrainResult, reproduce, score_frame, train, train_model
from steward.training.dataset import FeatureEncoding, encode

__all__ = [
    "FeatureEncoding",
    "ReproduceResult",
    "TrainResult",
    "encode",
    "read_card",
    "reproduce",
    "score_frame",
    "train",
    "train_model",
]
