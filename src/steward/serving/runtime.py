"""Model runtimes: a small interface over native model objects, and request validation.

A :class:`ModelRuntime` wraps a model in its *native* flavour (a LightGBM
``Booster``, a scikit-learn estimator) rather than MLflow's pyfunc wrapper:
pyfunc re-validates and converts every call through pandas, which costs more
than the prediction itself for one row. Validation happens once, here, against
an :class:`InputSchema` built from the model's stored feature encoding or signature.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from steward.backends.base import SignatureField
from steward.errors import Conflict, ValidationFailed
from steward.modeling.tasks import Task, task_named

__all__ = [
    "FieldSpec",
    "InputSchema",
    "ModelRuntime",
    "NativeRuntime",
    "field_errors",
]

logger = logging.getLogger(__name__)

Kind = Literal["number", "integer", "string", "boolean"]

# Column types of a model signature (MLflow's names) -> the kinds requests are validated against.
_SIGNATURE_KINDS: dict[str, Kind] = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "datetime": "string",
}


@dataclass(frozen=True)
class FieldSpec:
    """One input field of a model.

    Attributes:
        name: Column name, as the model was trained.
        kind: ``number`` (nullable: a null becomes NaN, which tree models treat as missing),
            ``integer``, ``string`` or ``boolean``.
        required: A missing or null value is an error.
        categories: For string fields of a categorical model: the known categories, in training order.
    """

    name: str
    kind: Kind = "number"
    required: bool = True
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class InputSchema:
    """The fields a model takes, in the order it takes them.

    Attributes:
        fields: Every input field, in model order.
        allowed_extra: Row fields accepted but not passed to the model (entity keys, sticky keys).
    """

    fields: tuple[FieldSpec, ...]
    allowed_extra: frozenset[str] = frozenset()
    codes: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.codes:
            for f in self.fields:
                if f.kind == "string" and f.categories is not None:
                    self.codes[f.name] = {c: float(i) for i, c in enumerate(f.categories)}

    @property
    def names(self) -> list[str]:
        """Field names in model order."""
        return [f.name for f in self.fields]

    @property
    def numeric(self) -> bool:
        """Every field becomes a float (numbers, booleans and encoded categories): one matrix per batch."""
        return all(f.kind in ("number", "integer", "boolean") or f.name in self.codes for f in self.fields)

    @classmethod
    def from_encoding(cls, encoding: Mapping[str, Any]) -> InputSchema:
        """Build from Steward's stored feature encoding (``{"features": [...], "categorical": {name: vocab}}``)."""
        cats: Mapping[str, Sequence[str]] = encoding.get("categorical", {}) or {}
        specs = [
            FieldSpec(str(n), "string", False, tuple(str(c) for c in cats[n])) if n in cats else FieldSpec(str(n), "number", False)
            for n in encoding.get("features", [])
        ]
        return cls(tuple(specs))

    @classmethod
    def from_signature(cls, inputs: Sequence[SignatureField] | None, feature_names: Sequence[str] | None = None) -> InputSchema:
        """Build from a stored model's column signature, falling back to numeric ``feature_names``."""
        specs: list[FieldSpec] = []
        for col in inputs or ():
            kind = _SIGNATURE_KINDS.get(col.type.lower(), "number")
            # floats are nullable (NaN is a value for them); other kinds follow the signature
            specs.append(FieldSpec(col.name, kind, col.required and kind != "number"))
        if not specs and feature_names:
            specs = [FieldSpec(n, "number", False) for n in feature_names]
        return cls(tuple(specs))

    def with_extra(self, names: Sequence[str]) -> InputSchema:
        """The same schema also accepting ``names`` (not passed to the model)."""
        return InputSchema(self.fields, self.allowed_extra | frozenset(n for n in names if n), self.codes)

    def to_json_schema(self) -> dict[str, Any]:
        """A JSON Schema of one row (for ``/v1/serving/models/{name}`` and clients)."""
        props: dict[str, Any] = {}
        for f in self.fields:
            t: Any = {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}[f.kind]
            prop: dict[str, Any] = {"type": t if f.required else [t, "null"]}
            if f.categories:
                prop["enum"] = list(f.categories)
            props[f.name] = prop
        for name in sorted(self.allowed_extra):
            props.setdefault(name, {})
        return {
            "type": "object",
            "properties": props,
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }


def _bad(errors: list[dict[str, Any]], row: int, where: str, message: str, kind: str) -> None:
    errors.append({"row": row, "field": where, "message": message, "type": kind})


def field_errors(schema: InputSchema, rows: Sequence[Any], *, prefix: str = "rows") -> list[dict[str, Any]]:
    """Every problem of ``rows`` against ``schema``, each naming its row index and field (``rows.3.dep_delay``).

    An empty list means the rows are valid. Validation never stops at the first error: a client
    fixes everything in one round trip.
    """
    plan = schema.__dict__.get("_plan")
    if plan is None:
        plan = (tuple((f.name, f.kind, f.required) for f in schema.fields), frozenset(f.name for f in schema.fields) | schema.allowed_extra)
        schema.__dict__["_plan"] = plan  # derived from frozen fields: computed once per schema
    fields, allowed_names = plan
    if all(_plainly_valid(fields, allowed_names, row) for row in rows):
        return []
    errors: list[dict[str, Any]] = []
    allowed = {f.name for f in schema.fields} | schema.allowed_extra
    for i, row in enumerate(rows):
        base = f"{prefix}.{i}" if prefix else str(i)
        if not isinstance(row, Mapping):
            _bad(errors, i, base, "a row must be a JSON object of field → value", "type_error.object")
            continue
        for f in schema.fields:
            where = f"{base}.{f.name}"
            if f.name not in row or row[f.name] is None:
                if f.required:
                    _bad(errors, i, where, "field required" if f.name not in row else "must not be null", "missing")
                continue
            v = row[f.name]
            if f.kind in ("number", "integer"):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    _bad(errors, i, where, f"expected a {f.kind}, got {type(v).__name__}", f"type_error.{f.kind}")
                elif isinstance(v, float) and not math.isfinite(v):
                    _bad(errors, i, where, "must be finite", "value_error.finite")
                elif f.kind == "integer" and isinstance(v, float) and not v.is_integer():
                    _bad(errors, i, where, "expected an integer", "type_error.integer")
            elif f.kind == "string":
                if not isinstance(v, str):
                    _bad(errors, i, where, f"expected a string, got {type(v).__name__}", "type_error.string")
            elif not isinstance(v, bool):
                _bad(errors, i, where, f"expected a boolean, got {type(v).__name__}", "type_error.boolean")
        for key in row:
            if key not in allowed:
                _bad(errors, i, f"{base}.{key}", "unknown field", "extra_forbidden")
    return errors


def _plainly_valid(fields: tuple[tuple[str, Kind, bool], ...], allowed: frozenset[str], row: Any) -> bool:
    """A quick yes for the common case (a dict of plain JSON values); False means "let the full check explain"."""
    if type(row) is not dict or not allowed.issuperset(row):
        return False
    get = row.get
    for name, kind, required in fields:
        v = get(name)
        if v is None:
            if required:
                return False
            continue
        t = type(v)
        if kind == "number":
            if not (t is int or (t is float and v - v == 0.0)):  # v - v is NaN for inf and NaN
                return False
        elif kind == "string":
            if t is not str:
                return False
        elif kind == "integer":
            if not (t is int or (t is float and v - v == 0.0 and v.is_integer())):
                return False
        elif t is not bool:
            return False
    return True


def rows_to_matrix(schema: InputSchema, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Validated rows → a float64 matrix in model order.

    Nulls become NaN; a categorical string becomes its code in the training vocabulary
    (an unseen category becomes NaN, exactly as training's encoding does).
    """
    names = schema.names
    codes = schema.codes
    nan = math.nan
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, n in enumerate(names):
            v = r.get(n)
            if v is None:
                out[i, j] = nan
            elif n in codes:
                out[i, j] = codes[n].get(v, nan) if isinstance(v, str) else nan
            else:
                out[i, j] = float(v)
    return out


def frame_to_matrix(schema: InputSchema, frame: Any) -> np.ndarray:
    """A Polars DataFrame (batch scoring) → the float matrix, vectorised; categories encoded as in training.

    Raises:
        ValidationFailed: a feature column is missing or has the wrong type (each one named).
    """
    import polars as pl

    errors: list[dict[str, Any]] = []
    exprs = []
    for f in schema.fields:
        if f.name not in frame.columns:
            errors.append({"field": f.name, "message": "column missing", "type": "missing"})
            continue
        dtype = frame.schema[f.name]
        if f.name in schema.codes:
            vocab = list(schema.codes[f.name])
            codes = [schema.codes[f.name][v] for v in vocab]
            exprs.append(pl.col(f.name).cast(pl.Utf8).replace_strict(vocab, codes, default=None, return_dtype=pl.Float64).alias(f.name))
        elif dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null:
            exprs.append(pl.col(f.name).cast(pl.Float64).alias(f.name))
        else:
            errors.append({"field": f.name, "message": f"expected a {f.kind}, got {dtype}", "type": f"type_error.{f.kind}"})
    if errors:
        raise validation_error(errors)
    out: np.ndarray = np.asarray(frame.select(exprs).to_numpy(), dtype=np.float64)
    return out


@runtime_checkable
class ModelRuntime(Protocol):
    """What the server needs from a loaded model.

    Attributes:
        name: Registered model name.
        version: Registry version served.
        feature_names: Input columns in model order.
        schema: Input validation schema.
    """

    name: str
    version: str
    feature_names: list[str]
    schema: InputSchema

    def predict(self, frame: Any) -> np.ndarray:
        """Predict for a matrix (or DataFrame) of rows in model order; one score per row."""
        ...

    def explain(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Local attributions for one validated row: ``base_value``, ``attributions``, ``prediction``."""
        ...


@dataclass
class NativeRuntime:
    """A LightGBM ``Booster`` or a scikit-learn estimator, called natively.

    Args:
        model: The native model object.
        name: Registered model name.
        version: Registry version.
        schema: Input schema; default: numeric fields from the model's feature names.
        info: Registry metadata (:class:`~steward.backends.base.ModelMetadata` or a dict), kept for ``/v1/serving/models/{name}``.
    """

    model: Any
    name: str
    version: str
    schema: InputSchema = field(default_factory=lambda: InputSchema(()))
    info: Any = None
    flavor: str = "unknown"

    def __post_init__(self) -> None:
        names = _feature_names(self.model)
        if not self.schema.fields:
            if not names:
                raise Conflict(f"model {self.name} v{self.version} has no feature names and no signature", code="serving.no_schema")
            self.schema = InputSchema(tuple(FieldSpec(n, "number", False) for n in names))
        self.feature_names = self.schema.names
        self._booster, self._is_classifier = _booster_of(self.model)
        if not self.schema.numeric:
            raise Conflict(
                f"model {self.name} v{self.version} takes string inputs without a stored encoding",
                code="serving.no_encoding",
                hint="serve models trained by Steward (their feature encoding is stored with them)",
            )
        mod = type(self.model).__module__
        self.flavor = "lightgbm" if mod.startswith("lightgbm") else "sklearn" if mod.startswith("sklearn") else mod.split(".")[0]

    def to_input(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validated rows → the float matrix :meth:`predict` takes."""
        return rows_to_matrix(self.schema, rows)

    @property
    def task(self) -> Task:
        """The model's task, as stored with it (``metadata.steward.task``; none stored: binary classification)."""
        return task_named(self._steward_meta.get("task"))

    @property
    def classes(self) -> list[Any]:
        """The classes in the order of the model's probability columns (``[]`` for regression and old models)."""
        return list(self._steward_meta.get("classes") or [])

    @property
    def _steward_meta(self) -> Mapping[str, Any]:
        meta = self.info.get("metadata") if isinstance(self.info, Mapping) else getattr(self.info, "metadata", None)
        got = (meta or {}).get("steward") if isinstance(meta, Mapping) else None
        return got if isinstance(got, Mapping) else {}

    def respond(self, out: np.ndarray) -> list[Any]:
        """The served answer per row for :meth:`predict`'s output (the task decides its shape)."""
        return self.task.response_rows(out, self.classes)

    def predict(self, frame: Any) -> np.ndarray:
        """One score per row (P(positive) for binary classifiers, the value for regressors), or ``[N, C]`` class probabilities."""
        if self._booster is not None and type(self.model).__name__ == "Booster":
            if isinstance(frame, np.ndarray) and frame.shape[0] == 1 and frame.ndim == 2:
                single: Any = self.__dict__.get("_single")
                if single is None:
                    single = self.__dict__["_single"] = _SingleRowPredictor.create(self.model, frame.shape[1])
                if single:
                    scores: np.ndarray = single(frame)
                    return scores
            out = self.model.predict(frame, num_threads=1)
        elif self._is_classifier and hasattr(self.model, "predict_proba"):
            proba = np.asarray(self.model.predict_proba(_named(frame, self.feature_names)))
            # multiclass: every class's probability (the task turns them into label + probabilities)
            out = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba
        else:
            out = self.model.predict(_named(frame, self.feature_names))
        arr = np.asarray(out, dtype=np.float64)
        return arr.reshape(-1) if arr.ndim > 1 and arr.shape[1] == 1 else arr

    def explain(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Exact TreeSHAP contributions for LightGBM; coefficient × value for linear models."""
        x = self.to_input([row])
        pred = float(self.predict(x)[0])
        if self._booster is not None:
            contrib = np.asarray(self._booster.predict(x, pred_contrib=True, num_threads=1))[0]
            attributions = {n: float(v) for n, v in zip(self.feature_names, contrib[:-1], strict=True)}
            return {
                "prediction": pred,
                "base_value": float(contrib[-1]),
                "attributions": attributions,
                "space": "raw_score",
                "method": "tree_shap",
            }
        coef = getattr(self.model, "coef_", None)
        if coef is not None:
            c = np.asarray(coef, dtype=np.float64).reshape(-1)
            intercept = float(np.asarray(getattr(self.model, "intercept_", 0.0)).reshape(-1)[0])
            values = np.asarray(x)[0]
            attributions = {n: float(cv * v) if math.isfinite(v) else 0.0 for n, cv, v in zip(self.feature_names, c, values, strict=True)}
            return {"prediction": pred, "base_value": intercept, "attributions": attributions, "space": "raw_score", "method": "linear"}
        try:
            import shap

            explainer = shap.Explainer(self.model)
            sv = explainer(x)
            vals = np.asarray(sv.values)[0]
            if vals.ndim > 1:
                vals = vals[:, -1]
            base = float(np.asarray(sv.base_values).reshape(-1)[-1])
            return {
                "prediction": pred,
                "base_value": base,
                "attributions": {n: float(v) for n, v in zip(self.feature_names, vals, strict=True)},
                "space": "model_output",
                "method": "shap",
            }
        except Exception as exc:
            raise Conflict(
                f"model {self.name} v{self.version} ({self.flavor}) cannot be explained: {exc}", code="serving.explain_unsupported"
            ) from exc


def _named(frame: Any, names: list[str]) -> Any:
    # sklearn estimators fitted on DataFrames warn (and slow down) on bare arrays; give them names back.
    if isinstance(frame, np.ndarray):
        import pandas as pd  # type: ignore[import-untyped]

        return pd.DataFrame(frame, columns=names)
    return frame


def _feature_names(model: Any) -> list[str]:
    if hasattr(model, "feature_name") and callable(model.feature_name):
        return [str(n) for n in model.feature_name()]
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    booster = getattr(model, "booster_", None)
    if booster is not None:
        return [str(n) for n in booster.feature_name()]
    return []


def _booster_of(model: Any) -> tuple[Any, bool]:
    name = type(model).__name__
    if name == "Booster" and type(model).__module__.startswith("lightgbm"):
        objective = str(model.params.get("objective", "")) if hasattr(model, "params") else ""
        return model, objective.startswith("binary") or objective in ("cross_entropy", "xentropy")
    booster = getattr(model, "booster_", None)
    is_classifier = hasattr(model, "predict_proba")
    return booster, is_classifier


def validation_error(errors: list[dict[str, Any]]) -> ValidationFailed:
    """A 422 naming every bad field."""
    fields = ", ".join(e["field"] for e in errors[:20])
    more = f" (+{len(errors) - 20} more)" if len(errors) > 20 else ""
    return ValidationFailed(f"invalid request: {fields}{more}", hint="fix the fields named in 'errors'", details={"errors": errors})


class _SingleRowPredictor:
    """One-row LightGBM prediction through ``LGBM_BoosterPredictForMatSingleRowFast``: one C call, GIL held.

    ``Booster.predict`` makes several ctypes calls per prediction (each releasing and re-taking the GIL,
    which under a busy server can wait a whole switch interval) and rebuilds its predictor every time.
    This keeps one LightGBM FastConfig per thread (a FastConfig must not be shared between threads) and
    calls through ``ctypes.PyDLL`` so the ~20 µs call never gives the GIL away. Same C predictor, same
    iterations as ``Booster.predict``, so the same scores.
    """

    def __init__(self, booster: Any, ncol: int, lib: Any, lib_gil: Any) -> None:
        import threading

        self.booster = booster
        self.ncol = ncol
        self._lib = lib
        self._lib_gil = lib_gil
        self._local = threading.local()
        self._handles: list[Any] = []  # every thread's FastConfig, freed with this predictor (before its booster)
        self.num_iteration = int(getattr(booster, "best_iteration", 0) or -1)

    def __del__(self) -> None:
        for handle in self._handles:
            with contextlib.suppress(Exception):
                self._lib.LGBM_FastConfigFree(handle)
        self._handles.clear()

    @classmethod
    def create(cls, booster: Any, ncol: int) -> _SingleRowPredictor | bool:
        """A predictor, or False when this booster or library cannot use the fast single-row API."""
        try:
            import ctypes

            from lightgbm.basic import _LIB  # type: ignore[attr-defined]

            if ncol != booster.num_feature() or booster.num_model_per_iteration() != 1:
                return False
            lib_gil = ctypes.PyDLL(_LIB._name)
            fn = lib_gil.LGBM_BoosterPredictForMatSingleRowFast
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
            pred = cls(booster, ncol, _LIB, fn)
            probe = np.zeros((1, ncol))
            if not np.allclose(pred(probe), booster.predict(probe, num_threads=1), rtol=0, atol=1e-12, equal_nan=True):
                return False
            return pred
        except Exception as exc:  # an old LightGBM or an unusual model: the ordinary path serves it
            logger.debug("LightGBM single-row fast path unavailable: %s", exc)
            return False

    def _config(self) -> Any:
        import ctypes

        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = ctypes.c_void_p()
            rc = self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle,
                ctypes.c_int(0),  # C_API_PREDICT_NORMAL, as Booster.predict
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(self.num_iteration),
                ctypes.c_int(1),  # C_API_DTYPE_FLOAT64
                ctypes.c_int32(self.ncol),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(handle),
            )
            if rc != 0:
                raise RuntimeError("LGBM_BoosterPredictForMatSingleRowFastInit failed")
            self._local.handle = handle
            self._handles.append(handle)
            self._local.out = np.empty(1, dtype=np.float64)
            self._local.out_len = ctypes.c_int64(0)
        return handle

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import ctypes

        handle = self._config()
        row = np.ascontiguousarray(frame[0], dtype=np.float64)
        out: np.ndarray = self._local.out
        if self._lib_gil(handle, row.ctypes.data, ctypes.byref(self._local.out_len), out.ctypes.data) != 0:
            raise RuntimeError("LGBM_BoosterPredictForMatSingleRowFast failed")
        return out.copy()
