"""Training: pinned training sets in, tracked and registered models out.

Heavy libraries (LightGBM, scikit-learn, Optuna, SHAP, Ray) are
imported inside the functions that use them; runs are tracked through the workspace's run tracker (MLflow).
"""

from steward.training.core import ReproduceResult, TrainResult, reproduce, train, train_model

__all__ = [
    "ReproduceResult",
    "TrainResult",
    "reproduce",
    "train",
    "train_model",
]
