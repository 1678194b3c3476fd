"""Dashboard pages in-process (httpx ASGI transport): real content from seeded data, auth, empty states."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from dashboard_seed import ADMIN_KEY, FEATURES, MODEL, NOW, VIEWER_KEY, new_project, seed_llm, seed_monitoring, seed_rollout

from steward.api.app import create_app
from steward.api.auth import ApiKeys
from steward.api.routes_dashboard import COOKIE
from steward.dashboard.charts import HLine, Marker, bar_chart, line_chart
from steward.workspace import Workspace

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {VIEWER_KEY}"}
PAGES = ("/", "/models", f"/models/{MODEL}", "/rollouts", "/drift", "/performance", "/audit", "/llm", "/traces")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _client(ws: Workspace, keys: ApiKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ws, api_keys=keys)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash.test") as c:
        yield c


@pytest.fixture
async def client(seeded: Workspace, keys: ApiKeys) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(seeded, keys):
        yield c


def _points(svg_html: str) -> list[int]:
    """``data-points`` of every chart on a page."""
    return [int(n) for n in re.findall(r'<svg class="chart[^"]*"[^>]*data-points="(\d+)"', svg_html)]


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


# -- content ---------------------------------------------------------------------------------------


async def test_overview_shows_models_rollouts_drift_and_spend(client: httpx.AsyncClient, seeded: Workspace) -> None:
    r = await client.get("/", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert f'href="/models/{MODEL}"' in page
    assert '<span class="badge alias alias-champion">v1</span>' in page
    assert '<span class="badge alias alias-challenger">v2</span>' in page
    assert '<span class="badge breach">breach</span>' in page  # origin_temp crossed the PSI threshold in the latest window
    assert "origin_temp psi" in page and "dep_hour psi" not in page
    month = NOW.strftime("%Y-%m")
    row = seeded.metadata.fetchone("SELECT SUM(cost_usd) AS c FROM llm_usage WHERE day >= ?", (f"{month}-01",))
    assert row is not None
    assert f"${float(row['c']):,.2f}" in page
    assert "chain verified" in page


async def test_models_list_versions_and_aliases(client: httpx.AsyncClient) -> None:
    r = await client.get("/models", headers=AUTH)
    assert r.status_code == 200
    rows = re.findall(r"<tr>\s*<td><a href=\"/models/flights_delay\?version=(\d)\">v\d</a></td>\s*<td>(.*?)</td>", r.text, re.S)
    assert dict(rows) == {
        "2": '<span class="badge alias alias-challenger">challenger</span> ',
        "1": '<span class="badge alias alias-champion">champion</span> ',
    }
    assert "roc_auc = 0.734" in r.text and "roc_auc = 0.712" in r.text


async def test_model_page_renders_card_and_alias_history(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/models/{MODEL}", headers=AUTH)
    assert r.status_code == 200
    page = r.text
    assert "Model card · v1" in page  # the champion's card by default
    assert "<h1>Model card: flights_delay v1</h1>" in page  # Markdown rendered to HTML
    assert "Predict at scheduling time whether a flight arrives 15 or more minutes late." in page
    assert re.search(r"<td>roc_auc</td>\s*<td>0\.7120</td>", page)  # the card's metrics table became a table
    assert "first model" in page and "trained by run r2" in page  # alias history with reasons
    r2 = await client.get(f"/models/{MODEL}", params={"version": 2}, headers=AUTH)
    assert "<h1>Model card: flights_delay v2</h1>" in r2.text
    assert '<tr class="selected">\n      <td><a href="?version=2">v2</a>' in r2.text


async def test_version_without_card_says_so(tmp_path: Path, keys: ApiKeys, mlflow_template: Path) -> None:
    import shutil

    from mlflow import MlflowClient

    ws = new_project(tmp_path / "nocard")
    shutil.copy(mlflow_template, ws.root / "mlflow.db")
    client = MlflowClient(ws.model_registry.uri, ws.model_registry.uri)
    client.create_registered_model("bare")
    client.create_model_version("bare", source=(tmp_path / "m").as_uri(), run_id=None)
    async for c in _client(ws, keys):
        r = await c.get("/models/bare", headers=AUTH)
    assert r.status_code == 200
    assert "no model card for bare v1" in r.text and "Model card · v1" in r.text
    assert '<td><a href="?version=1">v1</a></td>' in r.text


async def test_unknown_model_is_404_page(client: httpx.AsyncClient) -> None:
    r = await client.get("/models/no_such_model", headers=AUTH)
    assert r.status_code == 404
    assert "There is no model no_such_model" in r.text


async def test_rollouts_show_state_and_red_charts_per_variant(client: httpx.AsyncClient) -> None:
    r = await client.get("/rollouts", headers=AUTH)
    assert r.status_code == 200
    page = r.text
    assert "canary of v2 against v1" in page
    assert '<span class="badge running">running</span>' in page
    assert "hold at 50% for a longer look" in page
    # rate, errors, duration: two variants x two windows with metrics; traffic share: one point per step
    assert _points(page) == [4, 4, 4, 4]
    assert "challenger v2" in page and "champion v1" in page
    assert "max error rate: 2" in page  # the SLO's error-rate line (percent)
    assert "max p99: 80" in page


async def test_drift_per_feature_over_time_with_thresholds_and_actions(client: httpx.AsyncClient) -> None:
    r = await client.get("/drift", headers=AUTH)
    assert r.status_code == 200
    page = r.text
    assert _points(page) == [len(FEATURES) * 6]
    assert "feature_drift threshold: 0.2" in page and "warn: 0.1" in page
    assert page.count('<g class="marker">') == 5  # three monitor actions, the loop's start and its end
    latest = re.findall(r"<td>feature_drift</td><td>features</td><td>(\w+)</td><td>psi</td><td>([\d.]+)</td>.*?badge (\w+)", page, re.S)
    assert {(c, s) for c, _v, s in latest} == {("dep_hour", "ok"), ("origin_temp", "breach"), ("carrier_delay_rate", "ok")}
    r2 = await client.get("/drift", params={"model": "other"}, headers=AUTH)
    assert "No drift measured yet" in r2.text


async def test_performance_over_time_with_loop_markers(client: httpx.AsyncClient) -> None:
    r = await client.get("/performance", headers=AUTH)
    assert r.status_code == 200
    page = r.text
    assert _points(page) == [6]
    assert "quality threshold: 0.69" in page
    assert page.count('<g class="marker">') == 5
    assert "loop: started (feature_drift)" in page  # the loop's runs, from its own records
    assert "promoted: v2 passed the gate and the canary" in page
    assert page.count('<span class="badge alert action">alert</span>') == 2
    assert '<span class="badge retrain action">retrain</span>' in page
    loops = re.findall(r'<tr class="loop-row">.*?</tr>', page, re.S)
    assert len(loops) == 1
    assert '<span class="badge promoted outcome">promoted</span>' in loops[0]
    assert "training_set → train → gate → rollout → decide" in loops[0] and "<td>v2</td>" in loops[0]


async def test_audit_filters_and_verification(client: httpx.AsyncClient, seeded: Workspace) -> None:
    everything = seeded.audit.entries()
    r = await client.get("/audit", headers=AUTH)
    assert r.status_code == 200
    assert r.text.count('<tr class="audit-row">') == len(everything)
    assert "✔ chain verified · " + str(len(everything)) + " entries" in r.text
    r = await client.get("/audit", params={"actor": "user:alice"}, headers=AUTH)  # the seed's actor="alice", in the one grammar
    alice = [e for e in everything if e.actor == "user:alice"]
    assert alice and r.text.count('<tr class="audit-row">') == len(alice)
    assert '<option value="user:alice" selected>' in r.text
    r = await client.get("/audit", params={"action": "rollout"}, headers=AUTH)
    actions = re.findall(r'<span class="badge ([\w.]+) action">', r.text)
    assert actions and all(a.startswith("rollout.") for a in actions)
    assert len(actions) == len([e for e in everything if e.action.startswith("rollout")])
    r = await client.get("/audit", params={"model": MODEL, "actor": "nobody"}, headers=AUTH)
    assert "No audit entries match these filters." in r.text


async def test_audit_tampering_shows_broken_badge(tmp_path: Path, keys: ApiKeys) -> None:
    ws = new_project(tmp_path / "p")
    for i in range(3):
        ws.audit.append("registry.alias", f"model:m@{i}", actor="tester", model="m", details={"i": i})
    ws.metadata.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    async for c in _client(ws, keys):
        r = await c.get("/audit", headers=AUTH)
    assert r.status_code == 200
    assert "chain broken at entry 2" in r.text
    assert "entry 2 (registry.alias model:m@1) was edited" in r.text


async def test_llm_spend_by_key_and_model_with_projection(client: httpx.AsyncClient, seeded: Workspace) -> None:
    r = await client.get("/llm", headers=AUTH)
    assert r.status_code == 200
    page = r.text
    text = _text(page)
    by_key = {k: float(c) for k, c in re.findall(r"<tr><td>([\w-]+)</td><td>\d+</td><td>\d+</td><td>\d+</td><td>\$([\d.]+)</td><td>", page)}
    assert by_key == {"agent": 0.5, "team-search": 0.3}
    days = {r["day"] for r in seeded.metadata.fetchall("SELECT DISTINCT day FROM llm_usage")}
    assert len(days) == 5
    this_month = [d for d in days if d >= NOW.strftime("%Y-%m-01")]
    # cumulative spend per day this month plus the projection line (from the last day to the month's end), then
    # one stacked bar per day with spend, on both the by-key and the by-model chart
    assert _points(page) == [len(this_month) + 2, 5, 5]
    assert "projection" in page and "spend to date" in page
    assert re.search(r"projected for \w+ \d{4}", text)
    from steward.llm.gateway import cost_report

    assert f"${cost_report(seeded.metadata).projected_month_usd:,.2f}" in page


async def test_traces_lists_recent_spans(client: httpx.AsyncClient) -> None:
    r = await client.get("/traces", headers=AUTH)
    assert r.status_code == 200
    assert "<b>http.request</b>" in r.text and "llm.model</span>=chat-default" in r.text
    rows = re.findall(r'<tr class="span-row( child)?">.*?<b>([\w./ ]+)</b>', r.text, re.S)
    seeded_rows = [(child, name) for child, name in rows if name in ("http.request", "llm.chat")]
    assert seeded_rows == [("", "http.request"), (" child", "llm.chat")] * 3  # each parent directly above its child
    r = await client.get("/traces", params={"name": "llm.chat"}, headers=AUTH)
    # requests to the dashboard are traced too, so count only the seeded LLM calls: each a child span
    assert "<b>http.request</b>" not in r.text
    assert r.text.count("<b>llm.chat</b>") == 3 and r.text.count('<tr class="span-row child">') == 3


# -- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_pages_need_a_key(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")
    bad = await client.get(path, headers={"Authorization": "Bearer wrong-key"})
    assert bad.status_code == 401
    assert bad.headers["content-type"].startswith("application/problem+json")
    ok = await client.get(path, headers={"X-API-Key": ADMIN_KEY})
    assert ok.status_code == 200


async def _csrf(client: httpx.AsyncClient, path: str = "/login") -> str:
    """The CSRF token the form on ``path`` carries (its cookie is now in the client)."""
    page = await client.get(path, params={"next": "/drift"} if path == "/login" else None, headers=None)
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text[:300]
    return match.group(1)


async def test_login_sets_strict_httponly_cookie_and_logout_clears_it(client: httpx.AsyncClient) -> None:
    # The forms now carry a CSRF token (Issue 15 #10), so the test fetches the form before posting it, as a browser does.
    r = await client.get("/drift?model=x")
    assert r.headers["location"] == "/login?next=/drift%3Fmodel%3Dx"
    form = await client.get("/login", params={"next": "/drift"})
    assert form.status_code == 200 and 'name="key"' in form.text
    csrf = await _csrf(client)
    bad = await client.post("/login", data={"key": "nope", "next": "/drift", "csrf": csrf})
    assert bad.status_code == 401 and "That key is not valid." in bad.text
    assert COOKIE not in bad.cookies
    good = await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf})
    assert good.status_code == 303 and good.headers["location"] == "/drift"
    cookie = good.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert VIEWER_KEY not in cookie  # the browser holds a signed session token, never the key
    page = await client.get("/drift")  # the client keeps the cookie
    assert page.status_code == 200 and "dash-viewer · viewer" in page.text
    out = await client.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert (await client.get("/drift")).status_code == 303


async def test_login_and_logout_without_the_csrf_token_or_from_another_origin_are_refused(client: httpx.AsyncClient) -> None:
    no_token = await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift"})
    assert no_token.status_code == 403 and COOKIE not in no_token.cookies
    csrf = await _csrf(client)
    wrong = await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf + "x"})
    assert wrong.status_code == 403
    foreign = await client.post(
        "/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and COOKIE not in foreign.cookies
    cross_site = await client.post(
        "/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"}
    )
    assert cross_site.status_code == 403
    good = await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf}, headers={"Origin": "http://dash.test"})
    assert good.status_code == 303
    # a cross-site sign-out cannot end the session either
    assert (await client.post("/logout")).status_code == 403
    assert (await client.get("/drift")).status_code == 200


async def test_a_signed_out_session_cookie_stays_dead_on_the_server(client: httpx.AsyncClient) -> None:
    csrf = await _csrf(client)
    good = await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf})
    stolen = good.cookies[COOKIE]
    assert (await client.post("/logout", data={"csrf": csrf})).status_code == 303
    client.cookies.set(COOKIE, stolen)  # a copy of the cookie taken before sign-out
    assert (await client.get("/drift")).status_code == 303


async def test_admin_revokes_every_session_of_a_principal(client: httpx.AsyncClient, seeded: Workspace) -> None:
    csrf = await _csrf(client)
    await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf})
    assert (await client.get("/drift")).status_code == 200
    no_role = await client.post("/v1/admin/sessions/revoke", json={"principal": "dash-viewer"}, headers=AUTH)
    assert no_role.status_code == 403
    r = await client.post(
        "/v1/admin/sessions/revoke", json={"principal": "dash-viewer", "reason": "laptop lost"}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert r.status_code == 200 and r.json() == {"revoked": "dash-viewer"}
    assert (await client.get("/drift")).status_code == 303
    entry = seeded.audit.entries(action="auth.sessions_revoked")[-1]
    assert entry.subject == "principal:dash-viewer" and entry.payload["details"]["reason"] == "laptop lost"
    # a new sign-in after the revocation works
    csrf = await _csrf(client)
    await client.post("/login", data={"key": VIEWER_KEY, "next": "/drift", "csrf": csrf})
    assert (await client.get("/drift")).status_code == 200


async def test_repeated_wrong_keys_lock_the_client_out_with_retry_after(client: httpx.AsyncClient) -> None:
    csrf = await _csrf(client)
    codes = [(await client.post("/login", data={"key": f"guess-{i}", "next": "/", "csrf": csrf})).status_code for i in range(10)]
    assert codes == [401] * 10
    locked = await client.post("/login", data={"key": VIEWER_KEY, "next": "/", "csrf": csrf})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert COOKIE not in locked.cookies  # even the right key waits out the lock-out
    # the API's key check shares the lock-out for this client
    api = await client.get("/models", headers={"Authorization": "Bearer another-guess"})
    assert api.status_code == 429 and api.headers["content-type"].startswith("application/problem+json")
    assert api.json()["code"] == "auth.too_many_attempts" and int(api.headers["retry-after"]) > 0


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
async def test_login_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    csrf = await _csrf(client)
    r = await client.post("/login", data={"key": VIEWER_KEY, "next": target, "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_auth_switched_off_needs_no_sign_in(seeded: Workspace) -> None:
    async for c in _client(seeded, ApiKeys(required=False)):
        page = await c.get("/models")
        login = await c.get("/login", params={"next": "/audit"})
    assert page.status_code == 200 and "flights_delay" in page.text and "anonymous · admin" in page.text
    assert login.status_code == 303 and login.headers["location"] == "/audit"


async def test_forged_cookie_is_refused(client: httpx.AsyncClient) -> None:
    client.cookies.set(COOKIE, "forged")
    r = await client.get("/")
    assert r.status_code == 303


async def test_static_files_are_served(client: httpx.AsyncClient) -> None:
    css = await client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"] and "svg.chart" in css.text
    js = await client.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and "data-autosubmit" in js.text


# -- empty states ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/", "No registered models yet."),
        ("/models", "No registered models yet."),
        ("/rollouts", "No rollouts yet."),
        ("/drift", "No drift measured yet."),
        ("/performance", "No performance measured yet."),
        ("/audit", "No audit entries yet"),
        ("/llm", "No LLM gateway traffic in this period."),
        ("/traces", "No traces recorded yet."),
    ],
)
async def test_empty_project_gets_empty_states(tmp_path: Path, keys: ApiKeys, path: str, message: str) -> None:
    ws = new_project(tmp_path / "empty")
    async for c in _client(ws, keys):
        r = await c.get(path, headers=AUTH)
    assert r.status_code == 200
    assert message in r.text
    assert 'class="unavailable"' not in r.text  # nothing failed: there is just no data yet
    assert not (ws.root / "mlflow.db").exists()  # looking does not create a registry


async def test_broken_stage_degrades_to_a_message(tmp_path: Path, keys: ApiKeys) -> None:
    from steward.monitoring import MonitorVerdict, record_verdict

    ws = new_project(tmp_path / "broken")
    record_verdict(ws, MonitorVerdict("v1", MODEL, "1", None, NOW, 10, [], [], "ok", NOW.isoformat()))
    ws.metadata.execute("DROP TABLE monitor_checks")  # the stage's storage is broken, not merely empty
    async for c in _client(ws, keys):
        drift = await c.get("/drift", headers=AUTH)
        home = await c.get("/", headers=AUTH)
        models = await c.get("/models", headers=AUTH)
    for r in (drift, home):
        assert r.status_code == 200
        assert '<p class="unavailable">⚠ monitoring could not be read: OperationalError' in r.text
    assert models.status_code == 200 and 'class="unavailable"' not in models.text


async def test_pages_read_postgresql_metadata(tmp_path: Path, keys: ApiKeys, pg_url: str) -> None:
    """The same pages with the metadata store (rollouts, monitoring, usage, audit) on the real PostgreSQL."""
    ws = new_project(tmp_path / "pg", metadata_url=pg_url)
    seed_rollout(ws)
    seed_monitoring(ws)
    seed_llm(ws)
    async for c in _client(ws, keys):
        pages = {p: await c.get(p, headers=AUTH) for p in ("/", "/rollouts", "/drift", "/performance", "/audit", "/llm")}
        filtered = await c.get("/audit", params={"actor": "user:alice"}, headers=AUTH)
    for path, r in pages.items():
        assert r.status_code == 200, path
        assert 'class="unavailable"' not in r.text, (path, re.findall(r'class="unavailable">([^<]*)', r.text))
    assert _points(pages["/rollouts"].text) == [4, 4, 4, 4]
    assert _points(pages["/drift"].text) == [len(FEATURES) * 6]
    assert _points(pages["/performance"].text)[0] == 6
    assert pages["/audit"].text.count('<tr class="audit-row">') == len(ws.audit.entries())
    assert filtered.text.count('<tr class="audit-row">') == 1  # alice started the rollout
    assert "team-search" in pages["/llm"].text and "chain verified" in pages["/"].text
    ws.close()


# -- charts ----------------------------------------------------------------------------------------


def test_line_chart_draws_points_thresholds_and_markers() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=NOW.tzinfo)
    pts = [(t0.replace(hour=h), 0.05 * h) for h in range(5)]
    svg = line_chart(
        {"a": pts, "b <x>": [(t0, float("nan")), (t0.replace(hour=1), 0.3)]},
        hlines=[HLine(0.2, "threshold")],
        markers=[Marker(t0.replace(hour=3), "retrain: drift")],
        title="t",
    )
    assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
    assert svg.count('<circle class="pt"') == 6 and 'data-points="6"' in svg  # the NaN is dropped
    assert svg.count('class="threshold"') == 1 and svg.count('<g class="marker">') == 1
    assert "b &lt;x&gt;" in svg and "<x>" not in svg  # names are escaped
    assert "action: retrain" in svg
    assert 'data-points="0"' in line_chart({}, title="none")


def test_bar_chart_stacks_per_day() -> None:
    svg = bar_chart(["2026-01-01", "2026-01-02"], {"k1": [1.0, 0.0], "k2": [0.5, 2.0]}, title="spend")
    assert svg.count('<rect class="bar pt"') == 3  # the zero is not drawn
    assert 'data-points="2"' in svg
    assert "01-02 k2: 2" in svg
