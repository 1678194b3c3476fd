"""Estimators: resolve the spec's name, fit deterministically, log and load natively and safely.

* ``lightgbm.LGBMClassifier`` (or ``lightgbm``): fitted through the scikit-learn
  API, kept and logged as a ``lightgbm.Booster`` in MLflow's LightGBM flavour.
  The Booster is stored in LightGBM's own text format, so loading it never
  unpickles anything.
* ``lightgbm.LGBMRegressor`` likewise, for regression.
* ``sklearn.…`` or any other dotted path to a scikit-learn-compatible classifier or regressor:
  wrapped in a preprocessing pipeline (impute, scale, one-hot the categorical
  codes) and logged in MLflow's sklearn flavour with ``serialization_format="skops"``.
  Loading goes through ``skops.io.load`` with a trusted-type list Steward computes
  from its own allow-list, never the list stored inside the model (which a crafted
  artifact could widen). Pickle formats are never loaded.

Determinism: LightGBM runs with ``deterministic=True``, one thread and a fixed
seed; scikit-learn estimators get ``random_state`` when they take one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import yaml

from steward.errors import DataError, SpecError

if TYPE_CHECKING:
    from steward.backends.base import LoggedModel, RunTracker

__all__ = [
    "EstimatorRef",
    "fit",
    "load_native",
    "log_native",
    "pip_requirements",
    "predict_proba",
    "resolve_estimator",
]

logger = logging.getLogger(__name__)

# Module prefixes whose types may be rebuilt from a skops file.
SAFE_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "lightgbm.", "builtins.", "collections.OrderedDict")

_LGBM_DETERMINISTIC = {"deterministic": True, "force_row_wise": True, "n_jobs": 1, "verbose": -1}


@dataclass(frozen=True)
class EstimatorRef:
    """A resolved estimator: its kind (which MLflow flavour) and its dotted path."""

    kind: Literal["lightgbm", "sklearn"]
    path: str

    @property
    def module_root(self) -> str:
        """Top-level package of the estimator (trusted when loading its skops file)."""
        return self.path.split(".", 1)[0]


def resolve_estimator(path: str, *, classifier: bool = True) -> EstimatorRef:
    """Resolve ``model.estimator`` from the spec, for a classification task or (``classifier=False``) regression.

    ``lightgbm`` alone means the LightGBM model of the task (LGBMClassifier, whose objective becomes
    multiclass by itself when the label has more than two classes, or LGBMRegressor).

    Raises:
        SpecError: the dotted path does not name an importable class with ``fit`` and ``predict_proba``
            (a classifier) or ``predict`` (a regressor), or names the other kind of LightGBM model.
    """
    lgbm = {
        "lightgbm": "lightgbm.LGBMClassifier" if classifier else "lightgbm.LGBMRegressor",
        "lightgbm.LGBMClassifier": "lightgbm.LGBMClassifier",
        "lightgbm.sklearn.LGBMClassifier": "lightgbm.LGBMClassifier",
        "lightgbm.LGBMRegressor": "lightgbm.LGBMRegressor",
        "lightgbm.sklearn.LGBMRegressor": "lightgbm.LGBMRegressor",
    }
    if path in lgbm:
        resolved = lgbm[path]
        if resolved.endswith("Regressor") == classifier:
            want = "a classifier (e.g. lightgbm.LGBMClassifier)" if classifier else "a regressor (e.g. lightgbm.LGBMRegressor)"
            raise SpecError(f"model.estimator {path!r} does not fit model.task", hint=f"name {want}, or change model.task")
        return EstimatorRef("lightgbm", resolved)
    cls = _import_class(path)
    needs = "predict_proba" if classifier else "predict"
    if not hasattr(cls, "fit") or not hasattr(cls, needs):
        kind = "classifier" if classifier else "regressor"
        raise SpecError(f"model.estimator {path!r} has no fit/{needs}", hint=f"name a scikit-learn-compatible {kind} for model.task")
    return EstimatorRef("sklearn", path)


def _import_class(path: str) -> Any:
    module, _, name = path.rpartition(".")
    if not module:
        raise SpecError(f"model.estimator {path!r} is not a dotted path", hint="e.g. sklearn.linear_model.LogisticRegression")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"model.estimator {path!r} cannot be imported: {exc}", hint="install its package or fix the dotted path") from None


def _seeded_params(ref: EstimatorRef, params: dict[str, Any], seed: int) -> dict[str, Any]:
    if ref.kind == "lightgbm":
        return {"random_state": seed, **params, **_LGBM_DETERMINISTIC}
    cls = _import_class(ref.path)
    merged = dict(params)
    try:
        if "random_state" in cls().get_params():
            merged.setdefault("random_state", seed)
    except Exception:  # an estimator whose defaults cannot be instantiated: leave as is
        logger.debug("could not inspect %s for random_state", ref.path)
    return merged


def fit(ref: EstimatorRef, params: dict[str, Any], seed: int, x: pd.DataFrame, y: np.ndarray, categorical: list[str]) -> Any:
    """Fit the estimator deterministically; return the model to log (a Booster or a Pipeline)."""
    full = _seeded_params(ref, params, seed)
    if ref.kind == "lightgbm":
        import lightgbm

        clf = getattr(lightgbm, ref.path.rsplit(".", 1)[1])(**full)
        clf.fit(x, y, categorical_feature=[c for c in categorical if c in x.columns] or "auto")
        return clf.booster_
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = _import_class(ref.path)
    cats = [c for c in x.columns if c in categorical]
    nums = [c for c in x.columns if c not in categorical]
    parts: list[tuple[str, Any, list[str]]] = []
    if cats:
        parts.append(
            (
                "cat",
                Pipeline(
                    [("impute", SimpleImputer(strategy="constant", fill_value=-1.0)), ("onehot", OneHotEncoder(handle_unknown="ignore"))]
                ),
                cats,
            )
        )
    if nums:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), nums))
    pipe = Pipeline([("prep", ColumnTransformer(parts)), ("model", cls(**full))])
    pipe.fit(x, y)
    return pipe


def predict_proba(model: Any, x: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class, for a Booster or a scikit-learn classifier."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x))[:, 1].astype("float64")
    out = np.asarray(model.predict(x), dtype="float64")
    return out if out.ndim == 1 else out[:, -1]


def pip_requirements(ref: EstimatorRef) -> list[str]:
    """Exact pins for the model's runtime (MLflow's inference is slow and picks up the whole venv)."""
    names = ["mlflow", "numpy", "pandas"]
    names += ["lightgbm"] if ref.kind == "lightgbm" else ["scikit-learn", "scipy", "skops"]
    if ref.kind == "sklearn" and ref.module_root not in ("sklearn",):
        names.append(ref.module_root)
    pins = []
    for n in names:
        try:
            pins.append(f"{n}=={importlib.metadata.version(n)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(n)
    return pins


def _trusted_types(file: Path, ref_root: str | None) -> list[str]:
    import skops.io  # type: ignore[import-untyped]

    untrusted = skops.io.get_untrusted_types(file=str(file))
    prefixes = SAFE_TYPE_PREFIXES + ((ref_root + ".",) if ref_root else ())
    bad = [t for t in untrusted if not t.startswith(prefixes)]
    if bad:
        raise DataError(
            f"model file {file.name} holds types outside the allow-list: {', '.join(bad)}",
            code="registry.untrusted_types",
            hint="only scikit-learn, numpy, scipy, lightgbm and the spec's estimator package are loaded",
        )
    return list(untrusted)


def log_native(
    tracker: RunTracker,
    run_id: str,
    ref: EstimatorRef,
    model: Any,
    *,
    input_example: pd.DataFrame,
    output_example: np.ndarray,
    metadata: dict[str, Any],
) -> LoggedModel:
    """Log the model in its native flavour into the (active) run ``run_id``.

    A scikit-learn model is probed with skops first: a type outside the allow-list refuses
    the log (:class:`~steward.errors.DataError`), and only the vetted types are stored as trusted.
    """
    trusted: list[str] = []
    if ref.kind != "lightgbm":
        import skops.io  # type: ignore[import-untyped]

        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.skops"
            skops.io.dump(model, str(probe))
            trusted = _trusted_types(probe, ref.module_root)
    return tracker.log_model(
        run_id,
        model,
        flavor="lightgbm" if ref.kind == "lightgbm" else "sklearn",
        input_example=input_example,
        output_example=output_example,
        pip_requirements=pip_requirements(ref),
        metadata=metadata,
        trusted_types=trusted,
    )


def load_native(local_dir: Path, *, extra_trusted_root: str | None = None) -> Any:
    """Load a downloaded (and already verified) model directory without unpickling anything.

    Raises:
        DataError: the flavour or serialization format is not one Steward loads safely.
    """
    mlmodel = yaml.safe_load((local_dir / "MLmodel").read_text(encoding="utf-8"))
    flavors = mlmodel.get("flavors", {})
    lgb = flavors.get("lightgbm")
    if lgb and str(lgb.get("model_class", "")).endswith("Booster"):
        import lightgbm

        return lightgbm.Booster(model_file=str(local_dir / lgb["data"]))
    sk = flavors.get("sklearn")
    if sk and sk.get("serialization_format") == "skops":
        import skops.io  # type: ignore[import-untyped]

        path = local_dir / sk["pickled_model"]
        return skops.io.load(str(path), trusted=_trusted_types(path, extra_trusted_root))
    raise DataError(
        f"model in {local_dir} is not a LightGBM Booster or a skops scikit-learn model",
        code="registry.unsafe_format",
        hint="Steward never unpickles models; retrain with a supported estimator",
    )
