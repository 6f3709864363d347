"""The Starlette application: routes, templates, static files and the security middleware."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kombu_worker_sdk.dashboard import views
from kombu_worker_sdk.dashboard.data import DashboardData, age
from kombu_worker_sdk.dashboard.security import (
    CSRF_COOKIE,
    LOOPBACK_HOSTS,
    OPEN_PATHS,
    Guard,
    new_csrf_token,
    security_headers,
)

HERE = Path(__file__).parent
REFRESH_SECONDS = 2


class SecurityMiddleware(BaseHTTPMiddleware):
    """Token check, same-origin check for state changes, CSRF cookie and security headers."""

    def __init__(self, app: Any, guard: Guard, img_sources: str) -> None:
        super().__init__(app)
        self.guard = guard
        self.headers = security_headers(img_sources)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if not path.startswith(OPEN_PATHS) and not self.guard.authenticated(request.headers, request.cookies):
            if request.method == "GET" and "authorization" not in request.headers:
                response: Response = RedirectResponse("/login", status_code=303)
            else:
                response = PlainTextResponse("a token is required", status_code=401)
        elif not Guard.same_origin(request.method, request.headers, request.url.netloc):
            response = PlainTextResponse("cross-site request refused", status_code=403)
        else:
            csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
            request.state.csrf = csrf
            response = await call_next(request)
            if CSRF_COOKIE not in request.cookies:
                response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/")
        response.headers.update(self.headers)
        return response


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = age
    env.filters["duration"] = lambda s: age(s, since=False)
    env.globals["refresh_seconds"] = REFRESH_SECONDS
    return Jinja2Templates(env=env)


def _closing(data: DashboardData) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        data.close()

    return lifespan


def create_app(data: DashboardData, *, token: str | None = None, loopback_only: bool = True) -> Starlette:
    """The app over ``data``. Without a token, only loopback Host headers are served."""
    guard = Guard(token)
    middleware = [Middleware(SecurityMiddleware, guard=guard, img_sources=data.outputs.image_sources())]
    if loopback_only and not token:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS)))
    app = Starlette(
        routes=[
            Route("/", views.home),
            Route("/jobs", views.jobs),
            Route("/jobs/{job_id:path}", views.job),
            Route("/queues", views.queues),
            Route("/dead-letters", views.dead_letters),
            Route("/dead-letters/redrive", views.redrive, methods=["POST"]),
            Route("/workers", views.workers),
            Route("/files", views.files),
            Route("/login", views.login_form),
            Route("/login", views.login, methods=["POST"]),
            Route("/logout", views.logout, methods=["POST"]),
            Route("/healthz", views.healthz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=middleware,
        lifespan=_closing(data),
    )
    app.state.data = data
    app.state.guard = guard
    app.state.templates = templates()
    return app
