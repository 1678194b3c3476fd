"""The dashboard: server-rendered pages over the stage libraries, behind the API's keys.

Pages (``viewer`` role): ``/`` overview, ``/models``, ``/models/{name}``, ``/rollouts``,
``/drift``, ``/performance``, ``/audit``, ``/llm``, ``/traces``. A script or
``curl`` sends ``Authorization: Bearer KEY`` (or ``X-API-Key``); a browser signs in
at ``/login``, which checks the key through :mod:`steward.api.auth` (constant
time) and keeps a signed, expiring session token (never the key itself) in an
HttpOnly, SameSite=Strict cookie. A page request without
any credentials is redirected to ``/login``; a wrong key in a header gets 401.

Sign-in is hardened (:mod:`steward.governance.signin`): the login and sign-out forms carry a CSRF token
that must match a SameSite=Strict cookie, and a cross-origin ``Origin``/``Referer`` is refused (403);
too many wrong keys from one client lock it out for a while (429 with ``Retry-After``); signing out
revokes the session on the server, and ``POST /v1/admin/sessions/revoke`` ends every session of a
principal (or everyone's) at once.
Static files (CSS and a tiny script) are served from ``/dashboard/static``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from steward._primitives import make_actor
from steward.api.auth import ApiKeys, Principal, check_request, client_of, load_keys, require
from steward.api.routes_models import body_schema, parse_body, read_json
from steward.dashboard import STATIC, TEMPLATES, data
from steward.dashboard.charts import parse_time
from steward.errors import SpecError
from steward.governance.access import role_allows
from steward.governance.signin import AttemptLimiter, SessionRevocations, csrf_matches, new_csrf_token
from steward.spec import ServingSpec
from steward.workspace import Workspace

__all__ = ["COOKIE", "CSRF_COOKIE", "router", "setup"]

logger = logging.getLogger(__name__)

COOKIE = "steward_dashboard"
CSRF_COOKIE = "steward_csrf"
SESSION_TTL_S = 12 * 3600
STATIC_PATH = "/dashboard/static"

router = APIRouter(tags=["dashboard"], include_in_schema=False)
admin_router = APIRouter(prefix="/v1/admin/sessions", tags=["admin"])

NAV = (
    ("/", "Overview"),
    ("/models", "Models"),
    ("/rollouts", "Rollouts"),
    ("/drift", "Drift"),
    ("/performance", "Performance"),
    ("/audit", "Audit"),
    ("/llm", "LLM spend"),
    ("/traces", "Traces"),
)

_HEADERS = {
    # everything is served from this origin; charts are inline SVG, so no inline script or style is needed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """A page was requested without credentials: send the browser to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


def _has_header_key(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    return bool(auth.strip()) or bool(request.headers.get("x-api-key"))


def viewer(request: Request) -> Principal:
    """The caller, with at least the ``viewer`` role.

    A key in a header is checked by :func:`~steward.api.auth.check_request` (401/403 problem+json);
    otherwise the sign-in cookie; with neither, :class:`LoginRequired` (a redirect).
    """
    keys = _keys(request)
    if not keys.required or _has_header_key(request):
        return check_request(keys, request, "viewer")
    session = keys.session(request.cookies.get(COOKIE))
    if session is None or _revocations(request).is_revoked(session) or not role_allows(session.role, "viewer"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return Principal(session.name, session.role)


def _revocations(request: Request) -> SessionRevocations:
    """The server-side session revocations (in the workspace's cache store, shared by replicas on Redis)."""
    state = request.app.state
    revocations: SessionRevocations | None = getattr(state, "session_revocations", None)
    if revocations is None:
        ws: Workspace | None = state.workspace
        revocations = SessionRevocations(ws.cache_store if ws is not None else None, max_ttl_s=SESSION_TTL_S)
        state.session_revocations = revocations
    return revocations


def _same_origin(request: Request) -> bool:
    """Whether the browser says the form came from this site; with no signal either way, the CSRF token decides.

    Browsers send ``Sec-Fetch-Site``; with the pages' ``Referrer-Policy: no-referrer`` their ``Origin`` is the
    string ``null``, so that header is read only when it names a real origin.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    here = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return origin == here
    referer = request.headers.get("referer")
    return referer is None or referer == here or referer.startswith(here + "/")


def _form_is_genuine(request: Request, submitted: object) -> bool:
    return _same_origin(request) and csrf_matches(request.cookies.get(CSRF_COOKIE), str(submitted) if submitted else None)


def _workspace(request: Request) -> Workspace:
    ws: Workspace | None = request.app.state.workspace
    if ws is None:
        raise SpecError("the API was started without a project", code="dashboard.no_workspace", hint="run 'steward serve' in a project")
    return ws


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["when_s"] = lambda v: _when(v, seconds=True)
    env.filters["usd"] = lambda v: "—" if v is None else f"${float(v):,.2f}"
    env.filters["num"] = _num
    env.globals["nav"] = NAV
    env.globals["static"] = STATIC_PATH
    return env


def _when(value: Any, *, seconds: bool = False) -> str:
    """An ISO timestamp (or datetime) as ``YYYY-MM-DD HH:MM[:SS] UTC``."""
    t = parse_time(value)
    return "—" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    principal: Principal | None = None,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a dashboard template with the common context (nav, project, who is signed in, the CSRF token)."""
    ws: Workspace | None = request.app.state.workspace
    csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    page = (
        _env()
        .get_template(template)
        .render(
            request_path=request.url.path,
            project=ws.spec.project if ws is not None else "steward",
            principal=principal,
            now=datetime.now(UTC),
            csrf=csrf,
            **context,
        )
    )
    resp = HTMLResponse(page, status_code=status_code, headers={**_HEADERS, **(headers or {})})
    if request.cookies.get(CSRF_COOKIE) != csrf:
        resp.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return resp


def _safe_next(value: str | None) -> str:
    """Only same-site paths: never ``//host`` or a scheme (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


# -- sign in / out -------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form (asks for an API key)."""
    if not _keys(request).required:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key (constant time, through :mod:`steward.api.auth`) and set the session cookie."""
    form = await request.form()
    key = str(form.get("key") or "").strip()
    next_path = _safe_next(str(form.get("next") or "/"))
    limiter: AttemptLimiter = request.app.state.auth_attempts
    client = client_of(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        seconds = max(1, int(wait + 0.999))
        return render(
            request,
            "login.html",
            status_code=429,
            headers={"Retry-After": str(seconds)},
            next=next_path,
            error=f"Too many wrong keys from here: try again in {seconds} s.",
        )
    if not _form_is_genuine(request, form.get("csrf")):
        logger.info("dashboard sign-in refused from %s: missing or foreign CSRF token / origin", client)
        return render(
            request, "login.html", status_code=403, next=next_path, error="The form expired or came from another site: sign in again."
        )
    keys = _keys(request)
    principal = keys.identify(key)
    token = keys.issue_session(key, ttl_s=SESSION_TTL_S) if principal is not None else None
    if principal is None or token is None:
        logger.info("dashboard sign-in refused from %s", client)
        limiter.failed(client)
        return render(request, "login.html", status_code=401, next=next_path, error="That key is not valid.")
    limiter.succeeded(client)
    resp = RedirectResponse(next_path, status_code=303)
    resp.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=SESSION_TTL_S,
    )
    logger.info("dashboard sign-in: %s (%s)", principal.name, principal.role)
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session on the server (revoked until it would have expired) and forget the cookie."""
    form = await request.form()
    if not _form_is_genuine(request, form.get("csrf")):
        return render(request, "login.html", status_code=403, next="/", error="The sign-out form came from another site.")
    session = _keys(request).session(request.cookies.get(COOKIE))
    if session is not None:
        _revocations(request).revoke(session)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


# -- pages ---------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> Response:
    """Models with champion and challenger, rollouts, the latest drift status and this month's spend."""
    who = viewer(request)
    return render(request, "overview.html", principal=who, data=data.overview(_workspace(request)))


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> Response:
    """Every registered model, its versions and aliases."""
    who = viewer(request)
    return render(request, "models.html", principal=who, data=data.models_view(_workspace(request)))


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, version: int | None = None) -> Response:
    """One model: versions, aliases, alias history and a version's model card."""
    who = viewer(request)
    detail = data.model_detail(_workspace(request), name, version)
    if detail is None:
        return render(request, "not_found.html", status_code=404, principal=who, what=f"model {name}")
    return render(request, "model.html", principal=who, m=detail)


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(request: Request) -> Response:
    """Rollout state and per-variant RED charts."""
    who = viewer(request)
    return render(request, "rollouts.html", principal=who, data=data.rollouts_view(_workspace(request)))


@router.get("/drift", response_class=HTMLResponse)
def drift_page(request: Request, model: str | None = None) -> Response:
    """Drift per feature over time with the policy thresholds."""
    who = viewer(request)
    return render(request, "drift.html", principal=who, data=data.drift_view(_workspace(request), model=model or None), model=model or "")


@router.get("/performance", response_class=HTMLResponse)
def performance_page(request: Request, model: str | None = None) -> Response:
    """Quality over time with the moments the loop acted."""
    who = viewer(request)
    view = data.performance_view(_workspace(request), model=model or None)
    return render(request, "performance.html", principal=who, data=view, model=model or "")


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, model: str | None = None, action: str | None = None, actor: str | None = None) -> Response:
    """The audit trail with filters and the chain's verification."""
    who = viewer(request)
    return render(request, "audit.html", principal=who, data=data.audit_view(_workspace(request), model=model, action=action, actor=actor))


@router.get("/llm", response_class=HTMLResponse)
def llm_page(request: Request, days: int = 30) -> Response:
    """LLM spend by key and model per day, and the monthly projection."""
    who = viewer(request)
    days = max(1, min(days, 366))
    return render(request, "llm.html", principal=who, data=data.llm_view(_workspace(request), days=days), days=days)


@router.get("/traces", response_class=HTMLResponse)
def traces_page(request: Request, name: str | None = None, limit: int = 50) -> Response:
    """Recent traces (spans)."""
    who = viewer(request)
    limit = max(1, min(limit, 500))
    return render(request, "traces.html", principal=who, data=data.traces_view(_workspace(request), limit=limit, name=name))


class RevokeSessionsRequest(BaseModel):
    """Whose dashboard sessions to end."""

    principal: str | None = Field(default=None, description="the key's name; leave out to end everyone's sessions")
    reason: str = ""


def _admin(request: Request) -> Principal:
    return require(request, "admin")


@admin_router.post(
    "/revoke", summary="End dashboard sessions now (one principal's, or everyone's)", openapi_extra=body_schema(RevokeSessionsRequest)
)
async def revoke_sessions(request: Request, who: Principal = Depends(_admin)) -> dict[str, Any]:
    """Revoke every dashboard session issued until now for ``principal`` (or for everyone), and audit it."""
    body = parse_body(RevokeSessionsRequest, await read_json(request))  # after auth (the dependency): no key is 401
    return await run_in_threadpool(_revoke, request, body, who)  # the audit append writes the store


def _revoke(request: Request, body: RevokeSessionsRequest, who: Principal) -> dict[str, Any]:
    _revocations(request).revoke_all(body.principal)
    ws: Workspace | None = request.app.state.workspace
    if ws is not None:
        ws.audit.append(
            "auth.sessions_revoked",
            f"principal:{body.principal or '*'}",
            actor=make_actor("api", who.name),
            details={"reason": body.reason},
        )
    return {"revoked": body.principal or "*"}


def setup(app: FastAPI) -> None:
    """Mount the static files, make sure keys are loaded, and turn :class:`LoginRequired` into a redirect."""
    state = app.state
    if getattr(state, "api_keys", None) is None:  # normally loaded by routes_health.setup
        ws = state.workspace
        serving = ws.spec.serving if ws is not None else ServingSpec()
        state.api_keys = load_keys(serving.auth, ws.spec if ws is not None else None)
    app.mount(STATIC_PATH, StaticFiles(directory=str(STATIC)), name="dashboard-static")
    app.include_router(admin_router)
    if not hasattr(state, "auth_attempts"):  # create_app sets it; a bare FastAPI app in a test may not
        state.auth_attempts = AttemptLimiter()

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)
