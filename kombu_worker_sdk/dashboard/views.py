"""Request handlers. GETs only read; the two POSTs (redrive, login) check the CSRF token.

Handlers that touch a backend are plain functions: Starlette runs them in its thread
pool, so a slow SQS or PostgreSQL call never blocks the event loop. A backend that
fails is shown on the page (masked), never as a traceback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from kombu_worker_sdk.dashboard.data import DashboardData, describe, task_dict
from kombu_worker_sdk.dashboard.security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Guard
from kombu_worker_sdk.errors import WorkerSDKError
from kombu_worker_sdk.state import JobStatus


def _data(request: Request) -> DashboardData:
    data: DashboardData = request.app.state.data
    return data


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    data = _data(request)
    live = request.query_params.get("live") != "0"
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        name,
        {
            "backends": data.backends(),
            "csrf": getattr(request.state, "csrf", ""),
            "csrf_field": CSRF_FIELD,
            "live": live,
            "login": bool(request.app.state.guard.token),
            **context,
        },
        status_code=status_code,
    )


def home(request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=303)


def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def jobs(request: Request) -> Response:
    status = request.query_params.get("state") or None
    if status not in {None, *(s.value for s in JobStatus)}:
        status = None
    search = request.query_params.get("q", "")[:200]
    try:
        found, counts = _data(request).jobs(status, search)
        error = ""
    except WorkerSDKError as exc:
        found, counts, error = [], {}, describe(exc)
    return _page(request, "jobs.html", jobs=found, counts=counts, state=status, q=search, error=error)


def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    try:
        view = _data(request).job(job_id)
    except WorkerSDKError as exc:
        return _page(request, "error.html", error=describe(exc), status_code=503)
    if view.job is None and not view.tasks:
        return _page(request, "error.html", error=f"no job {job_id!r}", status_code=404)
    if request.query_params.get("format") == "json":
        return JSONResponse({"job_id": job_id, "tasks": [task_dict(t) for t in view.tasks]})
    return _page(request, "job.html", job_id=job_id, view=view)


def queues(request: Request) -> Response:
    try:
        stats, error = _data(request).queue_stats(), ""
    except WorkerSDKError as exc:
        stats, error = [], describe(exc)
    return _page(request, "queues.html", stats=stats, error=error)


def dead_letters(request: Request) -> Response:
    data = _data(request)
    names = data.queues()
    queue = request.query_params.get("queue") or (names[0] if names else "")
    try:
        letters, error = data.dead_letters(queue), ""
    except WorkerSDKError as exc:
        letters, error = [], describe(exc)
    moved = request.query_params.get("moved")
    return _page(
        request, "dead_letters.html", queue=queue, names=names, letters=letters, error=error, moved=moved
    )


async def redrive(request: Request) -> Response:
    """POST: redrive one message (``message_id``) or all (``all=1``) of a queue's DLQ."""
    form = await request.form()
    if not Guard.csrf_ok(_text(form.get(CSRF_FIELD)), request.cookies.get(CSRF_COOKIE)):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    queue = _text(form.get("queue")) or ""
    ids = None if _text(form.get("all")) == "1" else [_text(v) or "" for v in form.getlist("message_id")]
    if ids is not None and not any(ids):
        return PlainTextResponse("pick a message, or all", status_code=400)
    try:
        moved = await run_in_threadpool(_data(request).redrive, queue, ids)
    except WorkerSDKError as exc:
        return PlainTextResponse(f"redrive failed: {describe(exc)}", status_code=400)
    return RedirectResponse(f"/dead-letters?queue={quote(queue, safe='')}&moved={moved}", status_code=303)


def workers(request: Request) -> Response:
    try:
        found, error = _data(request).workers(), ""
    except WorkerSDKError as exc:
        found, error = [], describe(exc) + " (kw_workers comes with migration 2: kombu-worker db upgrade)"
    return _page(request, "workers.html", workers=found, error=error)


def files(request: Request) -> Response:
    """A stored object: a local file under the storage root, or a redirect to a presigned URL."""
    uri = request.query_params.get("uri", "")
    outputs = _data(request).outputs
    if outputs.scheme == "s3":
        links = outputs.list_prefix(uri.rsplit("/", 1)[0] + "/")
        match = next((link for link in links if link.uri == uri), None)
        if match is None:
            return PlainTextResponse("not found", status_code=404)
        return RedirectResponse(match.href, status_code=303)
    try:
        path = outputs.local_path(uri)
    except WorkerSDKError:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(path)


def login_form(request: Request) -> Response:
    return _page(request, "login.html", error="")


async def login(request: Request) -> Response:
    form = await request.form()
    guard: Guard = request.app.state.guard
    if not Guard.csrf_ok(_text(form.get(CSRF_FIELD)), request.cookies.get(CSRF_COOKIE)):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    if not guard.token_matches(_text(form.get("token")) or ""):
        return _page(request, "login.html", error="wrong token", status_code=401)
    response = RedirectResponse("/jobs", status_code=303)
    response.set_cookie(SESSION_COOKIE, guard.session_value, httponly=True, samesite="strict", path="/")
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    if not Guard.csrf_ok(_text(form.get(CSRF_FIELD)), request.cookies.get(CSRF_COOKIE)):
        return PlainTextResponse("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
