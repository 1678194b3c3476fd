"""The MLflow backend behind the ModelRegistry / RunTracker Protocols: one translation of MLflow's errors.

Not found is decided by MLflow's error code, never by message text; an unreachable store is
BackendUnavailable (never NotFound); a bad name or parameter is ValidationFailed (a 4xx).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from steward.backends.base import ModelRegistry, RunTracker
from steward.backends.mlflow_errors import mlflow_errors, translate_mlflow_error
from steward.backends.mlflow_registry import MlflowModelRegistry
from steward.backends.mlflow_tracker import MlflowRunTracker
from steward.errors import BackendUnavailable, Conflict, NotFound, StewardError, ValidationFailed
from steward.registry.versions import get_alias_version, get_model_version, list_models
from steward.spec import load_spec
from steward.workspace import Workspace

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"


def _mlflow_error(message: str, code: str) -> MlflowException:
    """An MlflowException as MLflow raises it (the code is the protobuf enum value)."""
    return MlflowException(message, error_code=ErrorCode.Value(code))


def _sqlalchemy_operational_error() -> Exception:
    import sqlalchemy.exc

    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


CODES = [
    ("RESOURCE_DOES_NOT_EXIST", NotFound),
    ("NOT_FOUND", NotFound),
    ("ENDPOINT_NOT_FOUND", NotFound),
    ("INVALID_PARAMETER_VALUE", ValidationFailed),
    ("BAD_REQUEST", ValidationFailed),
    ("MALFORMED_REQUEST", ValidationFailed),
    ("RESOURCE_ALREADY_EXISTS", Conflict),
    ("INVALID_STATE", Conflict),
    ("INTERNAL_ERROR", BackendUnavailable),
    ("TEMPORARILY_UNAVAILABLE", BackendUnavailable),
    ("PERMISSION_DENIED", BackendUnavailable),
]


@pytest.mark.parametrize(("code", "expected"), CODES, ids=[c for c, _ in CODES])
def test_each_mlflow_error_code_maps_to_one_steward_error(code: str, expected: type[StewardError]) -> None:
    err = translate_mlflow_error(_mlflow_error("something happened", code), what="reading x", uri="sqlite:///m.db")
    assert type(err) is expected
    assert err is not None and "reading x" in err.message and err.details["mlflow_code"] == code


def test_the_code_decides_never_the_message_text() -> None:
    # a message that says "not found" on a server failure is still an outage, and vice versa
    outage = translate_mlflow_error(_mlflow_error("model not found", "INTERNAL_ERROR"), what="w", uri="u")
    missing = translate_mlflow_error(_mlflow_error("connection refused", "RESOURCE_DOES_NOT_EXIST"), what="w", uri="u")
    assert isinstance(outage, BackendUnavailable) and not isinstance(outage, NotFound)
    assert isinstance(missing, NotFound)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_sqlalchemy_operational_error, BackendUnavailable),
        (lambda: sqlite3.OperationalError("unable to open database file"), BackendUnavailable),
        (lambda: ConnectionRefusedError(111, "Connection refused"), BackendUnavailable),
        (lambda: TimeoutError("timed out"), BackendUnavailable),
        (lambda: FileNotFoundError(2, "No such file", "/x/MLmodel"), NotFound),
    ],
    ids=["sqlalchemy-operational", "sqlite-operational", "connection-refused", "timeout", "file-not-found"],
)
def test_errors_under_mlflow_are_translated_by_type(make: object, expected: type[StewardError]) -> None:
    err = translate_mlflow_error(make(), what="w", uri="postgresql+psycopg://u:secret@db/x")  # type: ignore[operator]
    assert type(err) is expected
    assert err is not None and "secret" not in err.message  # the store is named without its password


def test_anything_else_propagates_unchanged() -> None:
    assert translate_mlflow_error(ValueError("a bug"), what="w", uri="u") is None
    with pytest.raises(ValueError, match="a bug"), mlflow_errors("w", uri="u"):
        raise ValueError("a bug")
    with pytest.raises(NotFound) as info, mlflow_errors("reading y", uri="u"):
        raise _mlflow_error("gone", "RESOURCE_DOES_NOT_EXIST")
    assert isinstance(info.value.__cause__, MlflowException)  # the original stays attached for the logs


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelRegistry, RunTracker, str]]:
    root = tmp_path_factory.mktemp("mlflow-backend")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = MlflowModelRegistry(uri)
    assert not registry.exists()  # asking does not create the embedded store
    tracker = MlflowRunTracker(uri, (root / "artifacts").as_uri())
    yield registry, tracker, uri
    registry.close()
    tracker.close()


def test_registry_and_tracker_raise_steward_errors_on_a_real_store(stores: tuple[ModelRegistry, RunTracker, str]) -> None:
    registry, tracker, uri = stores
    assert isinstance(registry, ModelRegistry) and isinstance(tracker, RunTracker)
    with pytest.raises(NotFound):
        registry.get_version("no_such_model", 1)
    assert registry.exists()  # the first call created and migrated it
    assert registry.get_alias("no_such_model", "champion") is None and registry.aliases("no_such_model") == {}
    with pytest.raises(NotFound):
        registry.list_versions("no_such_model")

    MlflowClient(uri, uri).create_registered_model("m1")
    assert registry.get_alias("m1", "champion") is None  # an unset alias on an existing model: not an invalid parameter
    assert registry.list_versions("m1") == [] and "m1" in registry.list_models()
    with pytest.raises(NotFound):
        registry.set_alias("m1", "champion", 7)  # no such version

    for bad in (
        lambda: registry.get_version("a:b", 1),
        lambda: registry.get_alias("a:b", "champion"),
        lambda: registry.list_versions("a:b"),
    ):
        with pytest.raises(ValidationFailed) as info:
            bad()
        assert 400 <= info.value.http_status < 500
    with pytest.raises(ValidationFailed):
        registry.set_alias("m1", "v1", 1)  # a reserved alias name

    exp = tracker.experiment_id("backend-test")
    assert tracker.experiment_id("backend-test") == exp  # created once, then found
    with pytest.raises(NotFound):
        tracker.get_run("0123456789abcdef0123456789abcdef")
    run_id = tracker.start_run(exp, run_name="r", tags={"t": "1"})
    tracker.log_params(run_id, {"p": "x"})
    tracker.log_metrics(run_id, {"m": 0.5})
    tracker.log_dict(run_id, {"a": 1}, "d/a.json")
    tracker.end_run(run_id)
    run = tracker.get_run(run_id)
    assert (run.status, run.tags["t"], run.params, run.metrics) == ("FINISHED", "1", {"p": "x"}, {"m": 0.5})
    assert tracker.load_dict(run_id, "d/a.json") == {"a": 1}
    with pytest.raises(NotFound):
        tracker.load_dict(run_id, "d/missing.json")
    with pytest.raises(Conflict):  # models are logged into the thread's active run only
        tracker.log_model(run_id, object(), flavor="lightgbm", input_example=None, output_example=None, pip_requirements=[], metadata={})


def test_unreachable_postgresql_tracking_store_is_backend_unavailable(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.store.db.utils

    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)  # MLflow's own retries would take ~100 s
    registry = MlflowModelRegistry(UNREACHABLE_PG)  # opening connects to nothing
    for call in (lambda: registry.get_alias("m", "champion"), lambda: registry.get_version("m", 1), registry.list_models):
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert not isinstance(info.value, NotFound) and info.value.http_status == 503
        assert "127.0.0.1:1" in info.value.message
    with pytest.raises(BackendUnavailable):
        MlflowRunTracker(UNREACHABLE_PG, (tmp_path / "a").as_uri()).experiment_id("x")

    # and through the registry stage, from a workspace whose spec names the dead server
    spec_file = project_dir / "steward.yaml"
    spec_file.write_text(spec_file.read_text() + "storage:\n  tracking_uri: postgresql://postgres@127.0.0.1:1/unreachable\n")
    ws = Workspace(load_spec(project_dir))
    for call in (lambda: get_alias_version(ws, "m", "champion"), lambda: get_model_version(ws, "m", 1), lambda: list_models(ws, "m")):
        with pytest.raises(BackendUnavailable):
            call()
    ws.close()


def test_unreachable_tracking_server_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    registry = MlflowModelRegistry("http://127.0.0.1:1")
    with pytest.raises(BackendUnavailable):
        registry.aliases("m")  # "no such model" would be an empty dict: an outage must not look like that


def test_invalid_model_name_is_a_4xx_through_the_registry_stage(project_dir: Path) -> None:
    ws = Workspace(load_spec(project_dir))
    with pytest.raises(ValidationFailed) as info:
        get_model_version(ws, "a:b", 1)
    assert info.value.http_status == 422 and info.value.code == "validation.failed"
    ws.close()
