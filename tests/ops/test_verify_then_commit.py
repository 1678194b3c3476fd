"""Verify, then commit: an operation whose target fails verification changes nothing and names model, version and file.

Defects 1, 12 and 13 of the fault pass: a byte-flipped ``model.lgb`` could be made champion (500, yet the
alias moved) or rolled out (500, yet a canary was left running); an edited manifest tag let a tampered
artifact load; the error named a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving_helpers import make_workspace, register, train_booster

import steward
from steward import ops
from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.errors import ArtifactRejected, DataError
from steward.registry import alias_history, load_verified_model
from steward.registry.loader import MANIFEST_TAG
from steward.registry.manifest import ALLOW_UNSIGNED_ENV, KEY_ENV, SIGNATURE_TAG
from steward.registry.versions import register_version, set_alias
from steward.serving.rollout import RolloutController
from steward.serving.server import ModelServer
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": "Bearer admin-key"}
KEYS = ApiKeys({"admin-key": ("admin1", "admin")})


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def register_tracked(ws: Workspace, name: str, seed: int, *, champion: bool = False) -> tuple[int, Path]:
    """Register a real booster; return its version and its stored ``model.lgb``."""
    before = set((ws.root / "mlartifacts").rglob("model.lgb"))
    version = register(ws, name, train_booster(seed, rounds=5), champion=champion)
    (stored,) = set((ws.root / "mlartifacts").rglob("model.lgb")) - before
    return version, stored


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, int, int]]:
    """flights: v1 champion (sound), v2 challenger whose model.lgb has one flipped byte."""
    ws = make_workspace(tmp_path_factory.mktemp("vtc"), "models:\n  flights: {}\npoll_interval_s: 0\nprediction_log: {enabled: false}")
    v1, _ = register_tracked(ws, "flights", 0, champion=True)
    v2, stored = register_tracked(ws, "flights", 1)
    flip_one_byte(stored)
    yield ws, v1, v2
    ws.close()


def state(ws: Workspace, name: str = "flights") -> tuple[Any, ...]:
    """Everything a refused operation must leave as it was: aliases, alias history, rollouts, audit trail."""
    latest = RolloutController(ws).latest(name)
    return (
        ops.model_aliases(ws, name),
        [c.change_id for c in alias_history(ws, name)],
        None if latest is None else (latest.rollout_id, latest.state),
        [(e.seq, e.hash) for e in ws.audit.entries()],
    )


@asynccontextmanager
async def api(ws: Workspace) -> AsyncIterator[tuple[httpx.AsyncClient, ModelServer]]:
    server = ModelServer(ws)
    application = create_app(ws, model_server=server, api_keys=KEYS, serving_spec=server.serving)
    transport = httpx.ASGITransport(app=application)
    async with application.router.lifespan_context(application), httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(1000):
            if server.ready:
                break
            await asyncio.sleep(0.01)
        yield client, server


def assert_names_model_version_file(body: dict[str, Any], version: int) -> None:
    detail = body["detail"]
    assert detail.startswith(f"flights v{version}: model.lgb sha256 mismatch (expected "), detail
    assert ", found " in detail and "steward-model-" not in detail and "/tmp" not in detail, detail
    assert body["changed"] == ["model.lgb"]


async def test_admin_alias_moves_to_a_tampered_version_change_nothing(tampered: tuple[Workspace, int, int]) -> None:
    ws, v1, v2 = tampered
    before = state(ws)
    async with api(ws) as (client, server):
        for alias in ("champion", "previous"):  # the gated promotion and a direct alias move
            r = await client.post(
                "/v1/admin/models/flights/aliases", json={"alias": alias, "version": v2, "reason": "x", "force": True}, headers=ADMIN
            )
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "registry.artifact_mismatch"
            assert_names_model_version_file(r.json(), v2)
        assert server.champion_version("flights") == str(v1)  # still serving the sound champion
    assert state(ws) == before
    assert ops.model_aliases(ws, "flights")["champion"] == v1


async def test_admin_rollout_start_of_a_tampered_challenger_writes_no_rollout(tampered: tuple[Workspace, int, int]) -> None:
    ws, _, v2 = tampered
    assert ops.model_aliases(ws, "flights")["challenger"] == v2
    before = state(ws)
    async with api(ws) as (client, server):
        r = await client.post("/v1/admin/rollouts/flights/start", json={"mode": "canary"}, headers=ADMIN)
        assert r.status_code == 422, r.text
        assert_names_model_version_file(r.json(), v2)
        assert server.models["flights"].challenger is None and server.models["flights"].policy.mode == "none"
    assert state(ws) == before
    assert RolloutController(ws).active("flights") is None
    with pytest.raises(ArtifactRejected):  # the library call without a server refuses the same way
        ops.start_rollout(ws, "flights", {"mode": "canary"})
    assert state(ws) == before


def test_rollback_to_a_tampered_previous_changes_nothing(tampered: tuple[Workspace, int, int]) -> None:
    ws, _, v2 = tampered
    set_alias(ws, "flights", "previous", v2, actor="test", reason="simulate an older bad champion", action="set")
    try:
        before = state(ws)
        with pytest.raises(ArtifactRejected) as err:
            ops.rollback(ws, "flights", reason="p99 doubled")
        assert err.value.http_status == 422 and err.value.message.startswith(f"flights v{v2}: model.lgb sha256 mismatch")
        assert state(ws) == before
    finally:
        set_alias(ws, "flights", "previous", None, actor="test", reason="cleanup", action="set")


def test_cli_promote_prints_one_red_line_naming_model_version_and_file(tampered: tuple[Workspace, int, int]) -> None:
    ws, _, v2 = tampered
    before = state(ws)
    src = str(Path(steward.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p), "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "steward", "--spec", str(ws.spec.spec_path), "promote", "flights", str(v2), "--reason", "x", "--force"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip() and "INFO" not in ln]
    # one error line (the CLI's convention adds the fix on an indented "hint:" line)
    assert lines[0].startswith(f"error[registry.artifact_mismatch]: flights v{v2}: model.lgb sha256 mismatch (expected "), out
    assert [ln.strip().split(":")[0] for ln in lines[1:]] == ["hint"], out
    assert state(ws) == before


def test_registration_of_an_artifact_that_does_not_match_registers_nothing(tampered: tuple[Workspace, int, int]) -> None:
    ws, v1, _ = tampered
    mv = ws.model_registry.get_version("flights", v1)
    manifest = json.loads(mv.tags[MANIFEST_TAG])
    manifest["model.lgb"] = "0" * 64
    versions_before = [v.version for v in ws.model_registry.list_versions("flights")]
    before = state(ws)
    with pytest.raises(DataError) as err:
        register_version(ws, name="flights", model_uri=mv.source, run_id="r", tags={MANIFEST_TAG: json.dumps(manifest)})
    assert "model.lgb sha256 mismatch (expected 000000000000…" in err.value.message
    assert [v.version for v in ws.model_registry.list_versions("flights")] == versions_before
    assert state(ws) == before


def test_signed_manifests_refuse_an_edited_manifest_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    ws = make_workspace(tmp_path, "models:\n  signed: {}")
    unsigned, _ = register_tracked(ws, "signed", 0)
    monkeypatch.setenv(KEY_ENV, "s3cret-for-tests")
    version, stored = register_tracked(ws, "signed", 1)
    tags = ws.model_registry.get_version("signed", version).tags
    assert tags[SIGNATURE_TAG].startswith("hmac-sha256:")
    load_verified_model(ws, "signed", version)  # signed and intact: loads

    # tamper with the artifact AND rewrite the manifest tag in the tracking store to match it
    flip_one_byte(stored)
    manifest = json.loads(tags[MANIFEST_TAG])
    manifest["model.lgb"] = __import__("hashlib").sha256(stored.read_bytes()).hexdigest()
    client = MlflowClient(tracking_uri=ws.tracker.uri, registry_uri=ws.tracker.uri)
    client.set_model_version_tag("signed", str(version), MANIFEST_TAG, json.dumps(manifest, sort_keys=True))
    with pytest.raises(ArtifactRejected) as bad:
        load_verified_model(ws, "signed", version)
    assert bad.value.code == "registry.signature_invalid" and bad.value.message.startswith(f"signed v{version}: ")

    # a version registered before the key existed: refused by default, accepted with the documented switch
    with pytest.raises(ArtifactRejected) as missing:
        load_verified_model(ws, "signed", unsigned)
    assert missing.value.code == "registry.signature_missing" and ALLOW_UNSIGNED_ENV in (missing.value.hint or "")
    monkeypatch.setenv(ALLOW_UNSIGNED_ENV, "1")
    load_verified_model(ws, "signed", unsigned)

    # without a key the edited tag is all there is to check: the tampered artifact loads (why the key exists)
    monkeypatch.delenv(KEY_ENV)
    load_verified_model(ws, "signed", version)
    ws.close()
