"""Abuse and input hardening common to every service (services/common/middleware.py and
services/common/http_limits.py): strict content types per route, the security headers on
every response, HSTS only in production mode, and bounds on the request line and headers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.common.http_limits import MAX_HEADER_BYTES, MAX_URL_BYTES, LimitedHttpTools
from services.common.middleware import (
    API_POLICY,
    FORM,
    JSON,
    MULTIPART,
    ContentTypeMiddleware,
    body_routes,
    docs_policy,
    install_security_headers,
    media_type_acceptable,
)
from services.common.settings import SERVICE_PORTS, Settings

# What each body-taking route takes (the report's table); a new route must be added here.
EXPECTED = {
    ("intake", "/api/v1/applications"): {JSON},
    ("intake", "/api/v1/verifications"): {JSON},
    ("intake", "/api/v1/verifications/{verification_id}/confirm"): {JSON},
    ("intake", "/api/v1/attachments"): {MULTIPART},
    ("intake", "/open311/v2/requests.{fmt}"): set(),  # checks itself, answers Open311's shape
    ("notification", "/eposta/ayril"): {FORM, MULTIPART},
    ("reporting", "/giris"): {FORM, MULTIPART},
    ("reporting", "/cikis"): {FORM, MULTIPART},
    ("tracking", "/takip/bilgi"): {FORM, MULTIPART},
    ("tracking", "/p/{token}"): {FORM, MULTIPART},
}
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def build(service: str, settings: Settings | None = None) -> FastAPI:
    app: FastAPI = importlib.import_module(f"services.{service}.app").build_app(
        settings or Settings()
    )
    return app


@contextlib.asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: nothing here needs Kafka or MongoDB.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://servis") as http:
        yield http


# --- strict content types ----------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_every_body_route_takes_json_or_the_form_it_reads(service: str) -> None:
    app = build(service)
    # Reading the table the middleware builds, path by path (the regex names the route).
    routes = {route.path.pattern: route.accepted for route in body_routes(app)}
    assert routes
    for pattern, accepted in routes.items():
        known = [v for (s, p), v in EXPECTED.items() if s == service and _same(pattern, p)]
        assert accepted == (known[0] if known else {JSON}), pattern


def _same(pattern: str, path: str) -> bool:
    import re

    concrete = re.sub(r"\{[^}]+\}", "x", path)
    return re.fullmatch(pattern, concrete) is not None


@pytest.mark.parametrize(
    ("content_type", "accepted", "ok"),
    [
        ("application/json", {JSON}, True),
        ("Application/JSON; charset=UTF-8", {JSON}, True),
        ('application/json; charset="utf-8"', {JSON}, True),
        ("application/json; charset=latin-1", {JSON}, False),
        ("text/plain;charset=UTF-8", {JSON}, False),  # what a cross-site form or fetch sends
        ("application/x-www-form-urlencoded", {JSON}, False),
        ("multipart/form-data; boundary=x", {FORM, MULTIPART}, True),
        ("application/jsonx", {JSON}, False),
        ("", {JSON}, False),
        (None, {JSON}, False),
    ],
)
def test_media_type_matching(content_type: str | None, accepted: set[str], ok: bool) -> None:
    assert media_type_acceptable(content_type, frozenset(accepted)) is ok


async def test_a_json_route_refuses_other_types_before_it_runs() -> None:
    app = build("routing")
    path = "/api/v1/routing/suggest"
    async with client(app) as http:
        for headers, body in [
            ({"Content-Type": "text/plain"}, b'{"text": "su"}'),
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"text=su"),
            ({}, b'{"text": "su"}'),
            ({"Content-Type": "application/json; charset=iso-8859-9"}, b'{"text": "su"}'),
        ]:
            answer = await http.post(path, content=body, headers=headers)
            assert answer.status_code == 415, (headers, answer.text)
            error = answer.json()["errors"][0]
            assert error["field"] == "Content-Type" and error["code"] == "unsupported_media_type"
            assert "beklenen: application/json" in error["message"]
            assert answer.headers["accept-post"] == JSON
            assert answer.headers["content-security-policy"] == API_POLICY

        async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length at all
            yield b'{"text": '
            yield b'"su"}'

        streamed = await http.post(path, content=chunks(), headers={"Content-Type": "text/xml"})
        assert streamed.status_code == 415
        # JSON gets past the check (to the route's own checks).
        assert (await http.post(path, json={"text": "su"})).status_code not in (413, 415)
        # A POST without a body needs no type.
        assert (await http.post("/api/v1/routing/x/route")).status_code != 415


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
async def test_a_chunked_body_over_the_limit_gets_413_on_every_service(service: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bytes are counted
        for _ in range(40):
            yield b" " * 65_536

    # A route of each service that reads its body before anything else.
    path, content_type = {
        "intake": ("/api/v1/verifications", JSON),
        "notification": ("/api/v1/templates/x/sms/preview", JSON),
        "reporting": ("/giris", FORM),
        "routing": ("/api/v1/routing/suggest", JSON),
        "tracking": ("/api/v1/calendar/leave-days", JSON),
    }[service]
    async with client(build(service)) as http:
        answer = await http.post(path, content=chunks(), headers={"Content-Type": content_type})
    assert answer.status_code == 413, (path, answer.text)
    assert answer.json()["errors"][0]["code"] == "payload_too_large"


async def test_form_and_file_routes_refuse_json_and_json_routes_refuse_forms() -> None:
    async with client(build("tracking")) as http:
        posted = await http.post("/takip/bilgi", json={"number": "x"})
        assert posted.status_code == 415
        assert posted.json()["errors"][0]["code"] == "unsupported_media_type"
        form = await http.post("/takip/bilgi", data={"number": "x"})
        assert form.status_code != 415
    async with client(build("intake")) as http:
        upload = await http.post("/api/v1/attachments", json={"file": "x"})
        assert upload.status_code == 415
        assert "multipart/form-data" in upload.json()["errors"][0]["message"]
        text = await http.post(
            "/api/v1/applications", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert text.status_code == 415


async def test_open311_answers_a_wrong_type_in_its_own_shape() -> None:
    async with client(build("intake")) as http:
        answer = await http.post("/open311/v2/requests.json", json={"service_code": "x"})
    assert answer.status_code == 415
    assert answer.json()[0]["code"] == 415
    assert "x-www-form-urlencoded" in answer.json()[0]["description"]


async def test_the_officer_api_has_no_ambient_credential_a_cross_site_form_could_use() -> None:
    """/gise and /kurum send `Authorization: Bearer` from sessionStorage: no cookie, no CORS.
    A form posted from another site carries neither, so it is refused before anything runs."""
    route = "/api/v1/institutions/DESKI/applications/00000000-0000-4000-8000-000000000000/open"
    async with client(build("tracking")) as http:
        cross_site = {"Origin": "https://kotu.example", "Referer": "https://kotu.example/x"}
        empty = await http.post(route, headers=cross_site)
        assert empty.status_code == 401
        filled = await http.post(route, data={"a": "1"}, headers=cross_site)
        assert filled.status_code == 415  # a form body: refused even before the token
        plain = await http.post(
            route, content=b"a=1", headers={**cross_site, "Content-Type": "text/plain"}
        )
        assert plain.status_code == 415
        preflight = await http.options(
            route,
            headers={
                **cross_site,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        for answer in (empty, filled, plain, preflight, await http.get("/kurum")):
            assert "set-cookie" not in answer.headers
    async with client(build("intake")) as http:
        counter = await http.post("/api/v1/applications", json={"channel": "counter"})
        assert counter.status_code in (401, 422, 503)
        for page in ("/gise", "/basvuru"):
            assert "set-cookie" not in (await http.get(page)).headers


# --- security headers --------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
async def test_every_response_carries_the_security_headers(service: str) -> None:
    app = build(service)
    async with client(app) as http:
        answers = {
            "healthz": await http.get("/healthz"),
            "metrics": await http.get("/metrics"),
            "openapi": await http.get("/openapi.json"),
            "docs": await http.get("/docs"),
            "redoc": await http.get("/redoc"),
            "404": await http.get("/yok"),
            "405": await http.delete("/healthz"),
            "413": await http.post(
                "/api/v1/x", content=b"x" * 2_000_000, headers={"Content-Type": JSON}
            ),
        }
    for name, answer in answers.items():
        for header, value in SECURITY.items():
            assert answer.headers.get(header) == value, (name, header)
        assert answer.headers["referrer-policy"] in ("no-referrer", "same-origin"), name
        assert "geolocation=(self)" in answer.headers["permissions-policy"]
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, name
        assert "strict-transport-security" not in answer.headers  # development mode
    assert answers["metrics"].headers["content-security-policy"] == API_POLICY
    docs = answers["docs"].headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in docs and "unsafe-inline' ;" not in docs


@pytest.mark.parametrize("page", ["/basvuru", "/gise"])
async def test_intake_pages_keep_their_script_policy(page: str) -> None:
    async with client(build("intake")) as http:
        answer = await http.get(page)
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["referrer-policy"] == "no-referrer"


def bare_app(*, production: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "evet"}

    @app.get("/bozuk")
    async def broken() -> dict[str, str]:
        raise RuntimeError("beklenmeyen")

    app.add_middleware(ContentTypeMiddleware)
    install_security_headers(app, production=production)
    return app


@pytest.mark.parametrize("production", [False, True])
async def test_hsts_only_in_production_mode_also_on_a_500(production: bool) -> None:
    app = bare_app(production=production)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://servis") as http:
        for answer in (await http.get("/ok"), await http.get("/bozuk")):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-security-policy"] == API_POLICY
            hsts = answer.headers.get("strict-transport-security")
            if production:
                assert hsts == "max-age=31536000; includeSubDomains"
            else:
                assert hsts is None
        assert (await http.get("/bozuk")).status_code == 500


def test_the_docs_policy_allows_exactly_the_pages_inline_scripts() -> None:
    page = b'<script src="/a.js"></script><script>\nrun(1)\n</script><SCRIPT type="x">b()</SCRIPT>'
    policy = docs_policy(page)
    assert policy.count("'sha256-") == 2
    # echo -n $'\nrun(1)\n' | openssl dgst -sha256 -binary | base64
    import base64
    import hashlib

    expected = base64.b64encode(hashlib.sha256(b"\nrun(1)\n").digest()).decode()
    assert f"'sha256-{expected}'" in policy
    assert "script-src 'self' 'sha256-" in policy and "'unsafe-inline'; style" not in policy


# --- request line and header bounds (the real HTTP server) -------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[int]:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        assert callable(send)
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tamam"})

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=LimitedHttpTools, lifespan="off")
    served = uvicorn.Server(config)
    import threading

    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    for _ in range(100):
        if served.started:
            break
        import time

        time.sleep(0.05)
    yield port
    served.should_exit = True
    thread.join(5)


def _exchange(port: int, *parts: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        try:
            for part in parts:
                connection.sendall(part)
        except OSError:
            pass  # the server may close while the rest is still being sent
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
                if b"tamam" in answer or b"errors" in answer:
                    break
        return answer


def test_the_server_bounds_the_request_line_and_the_headers(server: int) -> None:
    ok = _exchange(server, b"GET /?a=1 HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 8000 + b"\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
    long_url = b"GET /?" + b"q" * MAX_URL_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _exchange(server, long_url).startswith(b"HTTP/1.1 414")
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    refused = _exchange(server, big)
    assert refused.startswith(b"HTTP/1.1 431") and b"headers_too_large" in refused
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(150))
    assert _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431"
    )
    # One header that never ends is cut off too, not kept in memory.
    endless = [b"GET / HTTP/1.1\r\nHost: x\r\nX-A: "] + [b"a" * 16384] * 64
    assert _exchange(server, *endless).startswith(b"HTTP/1.1 431")


async def test_keep_alive_still_serves_several_requests(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    await writer.drain()
    answer = b""
    while answer.count(b"tamam") < 3:
        answer += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    assert answer.count(b"HTTP/1.1 200") == 3
