"""The web console: its static page at ``/console`` and its sessions (``/console/session``).

Thin: the sessions are gateway/sessions.py's; this module parses, sets or clears the cookie, and serves
the page's files from the package (``suanli/console/static``) with headers that forbid anything but this
origin's own scripts and styles.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from suanli.errors import BadRequest
from suanli.gateway import sessions
from suanli.gateway.platform import Platform
from suanli.gateway.requests import parse_json_object

STATIC_DIR = Path(str(files("suanli") / "console" / "static"))
ASSET_CACHE_S = 60  # the page's scripts and styles may be reused this long; index.html is revalidated each time
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
COOKIE_ATTRIBUTES = "HttpOnly; SameSite=Strict; Path=/"


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _cookie(request: Request, value: str, max_age_s: int) -> str:
    """The ``set-cookie`` value; ``Secure`` when the browser reached the gateway (or its proxy) over https."""
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    return f"{sessions.SESSION_COOKIE}={value}; {COOKIE_ATTRIBUTES}; Max-Age={max_age_s}{'; Secure' if secure else ''}"


def _session_answer(holder: sessions.Holder, status: int = 200) -> Response:
    return Response(orjson.dumps(sessions.session_view(holder)), status, media_type="application/json")


async def create_session(request: Request) -> Response:
    platform = _platform(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise BadRequest('Sign in with a JSON body, {"key": "sk-..."}, as application/json.', code="invalid_json")
    raw_key = parse_json_object(await request.body()).get("key")
    if not isinstance(raw_key, str) or not raw_key:
        raise BadRequest("'key' is required: an account's API key or an admin key.", code="missing_field", param="key")
    key = sessions.identify_key(platform.keys, platform.reader, raw_key)
    ttl_s = platform.settings.console_session_ttl_s
    signed = await sessions.sign_in(platform.writer, key, ttl_s)
    response = _session_answer(signed.holder)
    response.headers["set-cookie"] = _cookie(request, signed.session_id, max(1, round(ttl_s)))
    response.headers["cache-control"] = "no-store"
    return response


async def get_session(request: Request) -> Response:
    holder = sessions.current(_platform(request).reader, request.cookies.get(sessions.SESSION_COOKIE))
    response = _session_answer(holder)
    response.headers["cache-control"] = "no-store"
    return response


async def delete_session(request: Request) -> Response:
    platform = _platform(request)
    session_id = request.cookies.get(sessions.SESSION_COOKIE)
    await sessions.sign_out(platform.writer, platform.reader, session_id, request.headers.get(sessions.CSRF_HEADER))
    return Response(status_code=204, headers={"set-cookie": _cookie(request, "", 0)})


async def index(request: Request) -> Response:
    headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
    return FileResponse(STATIC_DIR / "index.html", headers=headers, media_type="text/html; charset=utf-8")


async def asset(request: Request) -> Response:
    """A file of the page, found by Starlette's StaticFiles (paths kept inside the directory, ETags, 304s)."""
    files = StaticFiles(directory=STATIC_DIR, check_dir=False)
    response = await files.get_response(request.path_params["name"], request.scope)
    response.headers.update({**SECURITY_HEADERS, "cache-control": f"max-age={ASSET_CACHE_S}"})
    return response


routes: list[BaseRoute] = [
    Route("/console/session", create_session, methods=["POST"]),
    Route("/console/session", get_session, methods=["GET"]),
    Route("/console/session", delete_session, methods=["DELETE"]),
    Route("/console", index, methods=["GET"]),
    Route("/console/", index, methods=["GET"]),
    Route("/console/assets/{name:path}", asset, methods=["GET"]),
]
