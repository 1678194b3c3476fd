"""Shared helpers of the serving and API tests: tiny native models, registry registration, fakes."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from steward.serving.runtime import FieldSpec, InputSchema, NativeRuntime
from steward.spec import ServingSpec
from steward.workspace import Workspace, open_workspace

CARRIERS = ["AA", "DL", "EV", "UA"]
FEATURES = ["dep_hour", "distance", "wind_speed", "carrier"]
ENCODING = {"features": FEATURES, "categorical": {"carrier": CARRIERS}}


def make_workspace(root: Path, serving_yaml: str = "", project: str = "serve") -> Workspace:
    """A project directory with a steward.yaml whose ``serving:`` section is ``serving_yaml`` (indented YAML)."""
    root.mkdir(parents=True, exist_ok=True)
    text = f"project: {project}\n"
    if serving_yaml.strip():
        text += "serving:\n" + "\n".join("  " + line for line in serving_yaml.strip("\n").splitlines()) + "\n"
    (root / "steward.yaml").write_text(text)
    return open_workspace(root)


def training_matrix(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Encoded features (carrier as its code) and a late label that depends on them."""
    rng = np.random.default_rng(seed)
    hour = rng.integers(5, 23, n).astype(float)
    dist = rng.uniform(100, 2500, n)
    wind = rng.gamma(2.0, 5.0, n)
    carrier = rng.integers(0, len(CARRIERS), n).astype(float)
    logit = -1.0 + 0.25 * (hour - 14) + 0.08 * (wind - 10) + 0.8 * (carrier == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.column_stack([hour, dist, wind, carrier]), y


def train_booster(seed: int = 0, rounds: int = 20) -> Any:
    """A small LightGBM binary Booster with named features."""
    import lightgbm as lgb

    X, y = training_matrix(seed=seed)
    ds = lgb.Dataset(X, y, feature_name=FEATURES, free_raw_data=False)
    params = {"objective": "binary", "num_leaves": 7, "learning_rate": 0.2, "verbose": -1, "seed": seed, "num_threads": 1}
    return lgb.train(params, ds, num_boost_round=rounds)


def native_runtime(seed: int = 0, name: str = "flights", version: str = "1") -> NativeRuntime:
    """A NativeRuntime over a fresh booster, with the flights-like encoding."""
    return NativeRuntime(train_booster(seed), name, version, InputSchema.from_encoding(ENCODING))


def register(ws: Workspace, name: str, booster: Any, *, champion: bool = False) -> int:
    """Log ``booster`` natively, register it through the registry API (manifest tag included); optionally make it champion."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from steward.registry import build_manifest, promote
    from steward.registry.loader import MANIFEST_TAG
    from steward.registry.versions import register_version

    mlflow.set_tracking_uri(ws.tracker.uri)
    mlflow.set_registry_uri(ws.tracker.uri)
    exp = ws.tracker.experiment_id(ws.spec.project)
    X, _ = training_matrix(20)
    frame = pd.DataFrame(X, columns=FEATURES)
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, booster.predict(X)),
            metadata={"steward": {"encoding": ENCODING}},
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp))
        manifest = build_manifest(local)
    version = register_version(
        ws, name=name, model_uri=info.model_uri, run_id=run.info.run_id, tags={MANIFEST_TAG: json.dumps(manifest, sort_keys=True)}
    )
    if champion:
        promote(ws, name, version, reason="test setup", actor="test", force=True)
    return version


def row(i: int = 0, **override: Any) -> dict[str, Any]:
    """One valid request row."""
    base: dict[str, Any] = {"dep_hour": 8 + i % 12, "distance": 500.0 + i, "wind_speed": 7.5, "carrier": CARRIERS[i % len(CARRIERS)]}
    base.update(override)
    return base


class FakeRuntime:
    """A ModelRuntime whose predictions are ``offset + 0.001 * dep_hour``; it can sleep or raise to test faults."""

    def __init__(self, name: str = "m", version: str = "1", *, offset: float = 0.1, sleep_s: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.version = version
        self.schema = InputSchema.from_encoding(ENCODING)
        self.feature_names = self.schema.names
        self.offset = offset
        self.sleep_s = sleep_s
        self.fail = fail
        self.calls: list[int] = []
        self.flavor = "fake"

    def to_input(self, rows: list[dict[str, Any]]) -> np.ndarray:
        from steward.serving.runtime import rows_to_matrix

        return rows_to_matrix(self.schema, rows)

    def predict(self, frame: Any) -> np.ndarray:
        x = np.asarray(frame)
        self.calls.append(len(x))
        if self.fail and not np.isnan(x).all():
            raise RuntimeError("challenger exploded")
        if self.sleep_s and not np.isnan(x).all():
            time.sleep(self.sleep_s)
        return self.offset + 0.001 * np.nan_to_num(x[:, 0])

    def explain(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "prediction": self.offset,
            "base_value": self.offset,
            "attributions": dict.fromkeys(self.feature_names, 0.0),
            "space": "raw",
            "method": "fake",
        }


class FakeRegistry:
    """Alias → version per model, and version → runtime factory: a registry without MLflow."""

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], str] = {}
        self.runtimes: dict[tuple[str, str], Callable[[], Any]] = {}
        self.down = False
        self.loads: list[tuple[str, str]] = []

    def add(self, name: str, version: str, factory: Callable[[], Any], *aliases: str) -> None:
        self.runtimes[(name, version)] = factory
        for a in aliases:
            self.aliases[(name, a)] = version

    def resolve(self, name: str, alias: str) -> str | None:
        from steward.errors import BackendUnavailable

        if self.down:
            raise BackendUnavailable("tracking database unreachable (test)")
        return self.aliases.get((name, alias))

    def load(self, name: str, ref: str, entity_keys: list[str]) -> Any:
        from steward.errors import BackendUnavailable, NotFound

        if self.down:
            raise BackendUnavailable("tracking database unreachable (test)")
        version = ref if ref.isdigit() else self.aliases.get((name, ref))
        if version is None or (name, version) not in self.runtimes:
            raise NotFound(f"no {name}@{ref}")
        self.loads.append((name, version))
        rt = self.runtimes[(name, version)]()
        if entity_keys:
            rt.schema = rt.schema.with_extra(entity_keys)
        return rt


def serving_spec(**overrides: Any) -> ServingSpec:
    """A ServingSpec from keyword overrides (nested dicts allowed)."""
    return ServingSpec.model_validate(overrides)


__all__ = [
    "CARRIERS",
    "ENCODING",
    "FEATURES",
    "FakeRegistry",
    "FakeRuntime",
    "FieldSpec",
    "make_workspace",
    "native_runtime",
    "register",
    "row",
    "serving_spec",
    "train_booster",
]
