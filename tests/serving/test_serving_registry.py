"""Serving against the real registry (MLflow on SQLite): verified loading, hash mismatch refused, alias moves, registry down."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from serving_helpers import make_workspace, register, row, train_booster

from steward.errors import DataError
from steward.serving.registry_link import load_runtime, resolve_version
from steward.serving.server import ModelServer
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, Any]]:
    ws = make_workspace(tmp_path_factory.mktemp("reg"), "models:\n  flights: {}\npoll_interval_s: 0\nprediction_log: {enabled: false}")
    b1, b2 = train_booster(0), train_booster(1)
    v1 = register(ws, "flights", b1, champion=True)
    v2 = register(ws, "flights", b2)
    return ws, {"v1": v1, "v2": v2, "b1": b1, "b2": b2}


def test_loads_natively_by_alias_after_verifying_hashes(registered: tuple[Workspace, dict[str, Any]]) -> None:
    ws, info = registered
    rt = load_runtime(ws, "flights", "champion")
    assert rt.version == str(info["v1"]) and rt.flavor == "lightgbm" and type(rt.model).__name__ == "Booster"
    assert rt.feature_names == ["dep_hour", "distance", "wind_speed", "carrier"]
    x = rt.to_input([row(0), row(1)])
    assert x[0, 3] == 0.0 and x[1, 3] == 1.0  # carriers encoded with the stored vocabulary
    np.testing.assert_allclose(rt.predict(x), info["b1"].predict(x))
    assert resolve_version(ws, "flights", "challenger") == str(info["v2"])
    assert resolve_version(ws, "flights", "nope") is None


def test_refuses_to_load_when_artifacts_do_not_match(registered: tuple[Workspace, dict[str, Any]]) -> None:
    ws, _ = registered
    before = set((ws.root / "mlartifacts").rglob("model.lgb"))
    register(ws, "tampered", train_booster(2), champion=True)
    files = sorted(set((ws.root / "mlartifacts").rglob("model.lgb")) - before)
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes().replace(b"num_leaves", b"num_Leaves"))
    with pytest.raises(DataError) as err:
        load_runtime(ws, "tampered", "champion")
    assert err.value.code == "registry.artifact_mismatch"

    from steward.spec import ServingSpec

    async def boot() -> ModelServer:
        server = ModelServer(
            ws, ServingSpec.model_validate({"models": {"tampered": {}}, "poll_interval_s": 0, "prediction_log": {"enabled": False}})
        )
        await server.start()
        await server.refresh()
        await server.stop()
        return server

    server = asyncio.run(boot())
    assert not server.ready and "do not match" in (server.models["tampered"].last_error or "")


async def test_alias_move_is_picked_up_and_registry_outage_is_survived(
    registered: tuple[Workspace, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, info = registered
    from steward.registry import promote

    server = ModelServer(ws)
    await server.start()
    try:
        await server.refresh()
        assert server.ready
        first = await server.predict("flights", [row(1)])
        assert first.version == str(info["v1"])
        promote(ws, "flights", info["v2"], reason="test", actor="test", force=True)
        report = await server.refresh()
        assert report["flights"]["changes"]["champion"] == {"from": str(info["v1"]), "to": str(info["v2"])}
        second = await server.predict("flights", [row(1)])
        assert second.version == str(info["v2"])
        assert second.predictions[0] == pytest.approx(
            float(info["b2"].predict(server.models["flights"].champion.runtime.to_input([row(1)]))[0])
        )  # type: ignore[union-attr]
        # the tracking database goes away (nothing listens on its port): polls fail, serving goes on.
        # The workspace opens its registry once, so the outage is a registry opened on a dead URL.
        import mlflow.store.db.utils

        from steward.backends.factory import open_model_registry

        monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)  # MLflow's own retries would take ~100 s
        storage = ws.spec.storage.model_copy(update={"tracking_uri": "postgresql://postgres@127.0.0.1:1/unreachable"})
        live = ws.model_registry
        ws.__dict__["model_registry"] = open_model_registry(ws.spec.model_copy(update={"storage": storage}))
        try:
            report = await server.refresh()
            assert "unreachable" in report["flights"]["error"] or "connect" in report["flights"]["error"].lower()
            third = await server.predict("flights", [row(2)])
            assert third.version == str(info["v2"]) and server.ready
            assert server.metrics.poll_errors._value.get() >= 1
        finally:
            ws.__dict__["model_registry"] = live
    finally:
        await server.stop()


def _flights(n: int) -> Any:
    import polars as pl

    rows = [row(i) for i in range(n)]
    frame = pl.DataFrame(rows).with_columns(pl.Series("flight_id", list(range(n))))
    return frame.with_columns(pl.when(pl.col("flight_id") % 7 == 0).then(None).otherwise(pl.col("wind_speed")).alias("wind_speed"))


def test_batch_scoring_is_chunked_and_matches_online_predictions(registered: tuple[Workspace, dict[str, Any]]) -> None:
    from steward.serving.scoring import score

    ws, info = registered
    ws.lake.write("silver.score_in", _flights(1000))
    seen: list[tuple[int, int | None]] = []
    result = score(
        ws, "flights@previous", "silver.score_in@0", "gold.scored", chunk_rows=300, progress=lambda stage, d, t: seen.append((d, t))
    )
    assert result.rows == 1000 and result.chunks == 4 and result.version == str(info["v1"])
    assert seen[-1] == (1000, 1000) and [d for d, _ in seen] == [300, 600, 900, 1000]
    out = ws.lake.read("gold.scored").sort("flight_id")
    rt = load_runtime(ws, "flights", str(info["v1"]))
    expected = rt.predict(rt.to_input(_flights(1000).sort("flight_id").to_dicts()))
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=1e-9)
    assert set(out["model_version"].unique().to_list()) == {str(info["v1"])}
    ws.lake.write("silver.bad_in", _flights(10).drop("carrier"))
    from steward.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        score(ws, "flights@previous", "silver.bad_in", "gold.bad_out")
    assert err.value.details["errors"][0]["field"] == "carrier"


def test_batch_scoring_on_ray_matches_local(registered: tuple[Workspace, dict[str, Any]]) -> None:
    pytest.importorskip("ray")
    from steward.serving.scoring import score

    ws, _ = registered
    ws.lake.write("silver.ray_in", _flights(200))
    local = score(ws, "flights@champion", "silver.ray_in", "gold.ray_local", chunk_rows=64)
    remote = score(ws, "flights@champion", "silver.ray_in", "gold.ray_out", chunk_rows=64, engine="ray")
    assert remote.rows == local.rows == 200 and remote.engine == "ray"
    a = ws.lake.read("gold.ray_local").sort("flight_id")["prediction"].to_numpy()
    b = ws.lake.read("gold.ray_out").sort("flight_id")["prediction"].to_numpy()
    np.testing.assert_allclose(a, b)
