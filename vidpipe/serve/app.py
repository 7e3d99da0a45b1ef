"""The HTTP API and web page of the service (FastAPI; OpenAPI docs at ``/docs``)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import VidpipeError
from ..redact import mask_secrets
from .config import MAX_VIEW_FPS, MIN_VIEW_FPS, StateFileError, StreamConfig, check_serve_name
from .events_api import add_event_routes
from .metrics import CONTENT_TYPE
from .service import Service

log = logging.getLogger(__name__)

BOUNDARY = "vidpipeframe"
COOKIE = "vidpipe_token"
OPEN_PATHS = {"/healthz"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MAX_BODY = 1 << 20  # bytes of a request body (a stream's configuration within its limits is far less)


def _height(value: int | None, default: int) -> int:
    """A viewer's height, rounded to a multiple of 8 (a bounded set of sizes to encode and keep)."""
    return max(64, min(2160, (value or default) // 8 * 8))


def _name(name: str) -> str:
    try:
        return check_serve_name(name)
    except VidpipeError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def _authority(netloc: str) -> str:
    """``host:port`` of a Host header or an origin, lowercase, without a default port (80, 443)."""
    netloc = netloc.lower().rstrip(".")
    for default in (":80", ":443"):
        netloc = netloc.removesuffix(default)
    return netloc


def _host_name(host: str) -> str:
    """The name in a Host header, without its port or an IPv6 address's brackets."""
    host = host.lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".")


def host_refused(host: str | None, names: frozenset[str]) -> str | None:
    """Why a request's Host header is refused (None: accepted). Accepted: an IP address (a DNS
    rebinding attack needs a name), ``localhost`` and ``*.localhost``, and ``names`` (``--host``, the
    machine's names when listening beyond it, ``web.hosts``): a page of another site whose name resolves
    here never drives the API."""
    if host is None:  # no browser sends a request without one
        return None
    name = _host_name(host)
    if name == "localhost" or name.endswith(".localhost") or name in names:
        return None
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        return f"Host {host!r} is not a name of this service (add it to web.hosts to serve it)"


def origin_refused(headers, host: str | None) -> str | None:
    """Why a state-changing request is refused (None: accepted): its ``Origin`` (else ``Referer``) must
    be this service's own (the Host it was sent to), so a page elsewhere (another port too) cannot post
    a form or a fetch here. Without either header (curl, scripts) it is accepted."""
    source = headers.get("origin") or headers.get("referer")
    if source is None or host is None:
        return None
    try:
        parts = urllib.parse.urlsplit(source)
    except ValueError:  # a malformed one ('http://[x'): not this service's origin
        parts = None
    if parts is not None and parts.scheme in ("http", "https") and _authority(parts.netloc) == _authority(host):
        return None
    return f"cross-origin request refused: {source!r} is not this service ({host})"


class _BodyLimit:
    """Request bodies of at most ``limit`` bytes (413 beyond), whether their length is announced or they
    come in chunks: nothing larger is ever held in memory."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, too_large)
            return message

        return await self.app(scope, limited, send)


class _ViewerLimit:
    """At most ``limit`` live views (MJPEG streams and mosaics) open at once: each holds a connection,
    a task and its share of the encoding for as long as it lasts; one more is answered 503 (and a log
    line, at most one a minute), so a crowd of viewers, or one client opening many, cannot take the
    machine's CPU or sockets from the pipeline and the API."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.open = 0
        self._logged = -math.inf

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/api/mosaic.mjpeg" or (path.startswith("/api/streams/") and path.endswith("/mjpeg"))):
            return await self.app(scope, receive, send)
        if self.open >= self.limit:
            if time.monotonic() - self._logged > 60:
                self._logged = time.monotonic()
                log.warning("live view refused: %d open, web.max_viewers is %d", self.open, self.limit)
            detail = f"too many live views open ({self.limit}, web.max_viewers); try again later"
            return await JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "10"})(
                scope, receive, send
            )
        self.open += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.open -= 1


def create_app(
    service: Service, token: str | None = None, manage_service: bool = True, hosts: Iterable[str] = ()
) -> FastAPI:
    """The application around ``service``; ``token``: every request but ``/healthz`` needs it (as
    ``Authorization: Bearer TOKEN``, or the cookie ``/?token=TOKEN`` sets for a browser).
    ``manage_service``: start the service with the application and stop it with it. ``hosts``: the
    names it is reached by besides IP addresses and ``localhost`` (see :func:`host_refused`)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if manage_service:
            await run_in_threadpool(service.start)
        try:
            yield
        finally:
            if manage_service:
                await run_in_threadpool(service.stop)

    app = FastAPI(title="vidpipe", summary="Live object detection on video streams", lifespan=lifespan)
    web = service.config.web
    page_html = resources.files("vidpipe.serve").joinpath("web/index.html").read_text()  # read once

    app.add_middleware(_BodyLimit, limit=MAX_BODY)
    app.add_middleware(_ViewerLimit, limit=web.max_viewers)  # (inside authorise: refused requests never count)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        """422 with each problem, its input among them, passwords masked (a PATCH's problem shows the
        stored configuration, uri included)."""
        return _masked({"detail": jsonable_encoder(exc.errors())}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def refused(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (204, 304):  # (no body)
            return Response(status_code=exc.status_code, headers=exc.headers)
        return _masked({"detail": exc.detail}, exc.status_code, exc.headers)

    names = frozenset(name.lower() for name in hosts)

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        """The checks of every request but ``/healthz``: its Host, its origin (when it changes
        something), its token."""
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        host = request.headers.get("host")
        refused = host_refused(host, names)
        if refused is not None:
            return JSONResponse({"detail": refused}, status_code=400)
        if request.method not in SAFE_METHODS:
            refused = origin_refused(request.headers, host)
            if refused is not None:
                return JSONResponse({"detail": refused}, status_code=403)
        if token is None:
            return await call_next(request)
        given = request.headers.get("authorization", "")
        offered = given[7:] if given.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if request.url.path == "/" and "token" in request.query_params:
            offered = request.query_params["token"]
            if hmac.compare_digest(offered.encode(), token.encode()):
                response = RedirectResponse("/", status_code=303)  # the token leaves the address bar
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                return response
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return JSONResponse(
                {"detail": "unauthorised: send Authorization: Bearer TOKEN"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return page_html

    @app.get("/healthz")
    def healthz() -> Response:
        ok = service.running
        return JSONResponse({"status": "ok" if ok else "down"}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/api/streams")
    def list_streams() -> list[dict]:
        """Every stream: name, uri (password masked), state, fps, frames, dropped, reconnects, latency,
        last frame time, counts."""
        return service.stream_list()

    @app.get("/api/streams/{name}")
    def get_stream(name: str) -> dict:
        try:
            return service.stream(_name(name))
        except KeyError:
            raise HTTPException(404, f"no stream named {name!r}") from None

    @app.put("/api/streams/{name}", status_code=201)
    def put_stream(name: str, spec: StreamConfig, response: Response) -> dict:
        """Create the stream, or replace it (only it restarts): 201 created, 200 replaced."""
        name = _name(name)
        try:
            created = service.put_stream(name, spec)
        except StateFileError as exc:
            raise HTTPException(500, f"{exc}; the stream was not changed") from None
        except VidpipeError as exc:
            raise HTTPException(422, str(exc)) from None
        response.status_code = 201 if created else 200
        return service.stream(name)

    @app.patch("/api/streams/{name}")
    def patch_stream(name: str, changes: Annotated[dict[str, Any], Body()]) -> dict:
        """Change some of a stream's settings (the page's drawn lines and zones); the others, its uri
        among them (shown masked), stay as they are; only it restarts. 404 unknown, 422 a bad value."""
        name = _name(name)
        spec = service.streams.get(name)
        if spec is None:
            raise HTTPException(404, f"no stream named {name!r}")
        try:
            changed = StreamConfig.model_validate({**spec.model_dump(by_alias=True, exclude_defaults=True), **changes})
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        try:
            service.put_stream(name, changed)
        except StateFileError as exc:
            raise HTTPException(500, f"{exc}; the stream was not changed") from None
        except VidpipeError as exc:
            raise HTTPException(422, str(exc)) from None
        return service.stream(name)

    @app.delete("/api/streams/{name}", status_code=204)
    def delete_stream(name: str) -> Response:
        """Remove the stream; its outputs are finalised when this returns."""
        try:
            service.delete_stream(_name(name))
        except KeyError:
            raise HTTPException(404, f"no stream named {name!r}") from None
        except StateFileError as exc:
            raise HTTPException(500, f"{exc}; the stream was not removed") from None
        return Response(status_code=204)

    @app.get("/api/streams/{name}/snapshot.jpg")
    async def snapshot(name: str, height: int | None = Query(None, ge=64, le=2160)) -> Response:
        name = _name(name)
        if name not in service.streams:
            raise HTTPException(404, f"no stream named {name!r}")
        found = await run_in_threadpool(service.live.jpeg, name, height)
        if found is None:
            raise HTTPException(404, f"stream {name!r} has no frame yet")
        return Response(found[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/streams/{name}/mjpeg")
    async def mjpeg(
        name: str,
        request: Request,
        fps: float | None = Query(None, ge=MIN_VIEW_FPS, le=MAX_VIEW_FPS),
        height: int | None = Query(None, ge=64, le=2160),
    ) -> StreamingResponse:
        """The annotated stream as ``multipart/x-mixed-replace`` JPEGs, at ``fps`` at most."""
        name = _name(name)
        if name not in service.streams:
            raise HTTPException(404, f"no stream named {name!r}")
        size = _height(height, web.height)

        async def frames():
            def latest():
                return service.live.jpeg(name, size)

            async for data in _paced(
                request, fps or web.fps, lambda: service.live.seq(name), latest, alive=lambda: name in service.streams
            ):
                yield data

        return _multipart(frames())

    @app.get("/api/mosaic.mjpeg")
    async def mosaic(
        request: Request,
        fps: float | None = Query(None, ge=MIN_VIEW_FPS, le=MAX_VIEW_FPS),
        height: int | None = Query(None, ge=64, le=2160),
    ) -> StreamingResponse:
        """Every stream in one grid: one connection for any number of streams (browsers open at most
        six at once to a host)."""
        size = _height(height, 720)

        def key():
            return service.live.mosaic_key(sorted(service.streams))

        async def frames():
            def picture():
                return service.live.mosaic(sorted(service.streams), size)

            async for data in _paced(request, fps or web.fps, key, picture):
                yield data

        return _multipart(frames())

    add_event_routes(app, service)

    @app.post("/api/reload")
    def reload() -> dict:
        """Read the configuration file again and apply the differences (as SIGHUP does)."""
        return {"done": service.reload()}

    async def _paced(request: Request, fps: float, current, encode, alive=lambda: True):
        """JPEG parts at ``fps`` at most, each new frame once; ends when the viewer goes, the stream is
        removed or the service stops. Waiting on the viewer (a slow connection) delays only this viewer."""
        period = 1.0 / fps
        last = object()
        while not service.stopping.is_set() and alive():
            started = time.monotonic()
            now = current()
            if now != last and now is not None:
                found = await run_in_threadpool(encode)
                if found is not None:
                    last = now
                    data = found[1]
                    yield (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                        + data
                        + b"\r\n"
                    )
            while True:  # (the viewer leaving, the stream or the service ending seen within a second)
                if await request.is_disconnected():
                    return
                left = period - (time.monotonic() - started)
                if left <= 0 or service.stopping.is_set() or not alive():
                    break
                await asyncio.sleep(min(max(0.005, left), 1.0))

    return app


def _masked(body: dict, status: int, headers: dict | None = None) -> Response:
    """An error answer whose text has every URL's password masked."""
    text = mask_secrets(json.dumps(body, default=str))
    return Response(text, status_code=status, media_type="application/json", headers=headers)


def _multipart(parts) -> StreamingResponse:
    return StreamingResponse(
        parts,
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
