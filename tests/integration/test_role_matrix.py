"""The role × endpoint matrix (issue 11): every route of the five services, against the real
stack, called with no token, with bad tokens (expired, wrongly signed, malformed, alg "none")
and with a valid token of every role, of Denizli (20) and of İzmir (35), of DESKİ and of
another institution. Never a 5xx; a protected route answers 401 to every bad token; and the
403s are exactly what POLICY below says.

The bodies are empty JSON objects and the ids unknown, so nothing is changed: an allowed
caller gets a 404, 409, 412, 422 or 428 at worst. The counts go to the test's output and to
.ak/role_matrix.txt (the closing note quotes them)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from services.common import topics
from services.common.auth import Role, issue_token
from services.common.settings import Settings
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from tests.conftest import fresh_consumer_group, produce, running_intake

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / ".ak" / "role_matrix.txt"

HOME, OTHER_PROVINCE = 20, 35
INSTITUTION, OTHER_INSTITUTION = "DESKI", "ACIPAYAM-KYM"
UNKNOWN_ID = "00000000-0000-4000-8000-00000000abcd"

# --- who is asked ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role | None  # None: a bad or missing token
    province: int | None = None
    institution: str | None = None
    token: str | None = None


def callers(settings: Settings) -> list[Caller]:
    def staff(role: Role, province: int | None, institution: str | None = None) -> Caller:
        name = (
            role.value
            + (f"@{province}" if province else "")
            + (f"/{institution}" if institution else "")
        )
        token = issue_token(
            settings,
            subject=f"matris-{name}",
            role=role,
            province=province,
            institution=institution,
        )
        return Caller(name, role, province, institution, token)

    wrong_key = Settings(jwt_secret="baska-bir-gizli-anahtar-en-az-32-bayt-uzun!")
    bad = [
        Caller("yok", None),
        Caller(
            "süresi-dolmuş",
            None,
            token=issue_token(settings, subject="x", role=Role.admin, ttl=timedelta(seconds=-60)),
        ),
        Caller("yanlış-imza", None, token=issue_token(wrong_key, subject="x", role=Role.admin)),
        Caller("bozuk", None, token="bu.bir-anahtar.degil"),
        Caller(
            "alg-none",
            None,
            token=jwt.encode(
                {"sub": "x", "role": "admin", "iss": settings.jwt_issuer, "exp": 4102444800},
                None,
                algorithm="none",
            ),
        ),
    ]
    now = int(time.time())
    signed = {"sub": "x", "iss": settings.jwt_issuer, "iat": now, "exp": now + 600}
    bad += [
        # Correctly signed, but with claims that make no principal.
        Caller(
            "bilinmeyen-rol",
            None,
            token=jwt.encode(signed | {"role": "padisah"}, settings.jwt_secret, "HS256"),
        ),
        Caller(
            "il-abc",
            None,
            token=jwt.encode(
                signed | {"role": "supervisor", "prov": "abc"}, settings.jwt_secret, "HS256"
            ),
        ),
        Caller(
            "kurumsuz-kurum",
            None,
            token=jwt.encode(signed | {"role": "institution"}, settings.jwt_secret, "HS256"),
        ),
        # RS256 where no identity provider is configured.
        Caller(
            "rs256-sağlayıcısız",
            None,
            token=jwt.encode(
                signed | {"role": "admin"},
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "RS256",
            ),
        ),
    ]
    good = [
        staff(Role.citizen, HOME),
        staff(Role.officer, HOME),
        staff(Role.officer, OTHER_PROVINCE),
        staff(Role.counter_officer, HOME),
        staff(Role.counter_officer, OTHER_PROVINCE),
        staff(Role.routing_officer, HOME),
        staff(Role.routing_officer, OTHER_PROVINCE),
        staff(Role.institution, HOME, INSTITUTION),
        staff(Role.institution, HOME, OTHER_INSTITUTION),
        staff(Role.supervisor, HOME),
        staff(Role.supervisor, OTHER_PROVINCE),
        staff(Role.governor, HOME),
        staff(Role.governor, OTHER_PROVINCE),
        staff(Role.auditor, None),
        staff(Role.admin, None),
    ]
    return bad + good


# --- the policy --------------------------------------------------------------------------------

R = Role
PUBLIC = "public"  # no token needed (a bad one may still be refused: optional sign-in)
PAGE = "page"  # an HTML page that signs in itself: a bad token shows the sign-in form
# How the resource in the path is scoped, beyond the role:
ROLE_ONLY = "role"  # the role decides; the data is narrowed to the caller's own (no 403)
BY_ID = "id"  # an unknown application: out-of-scope callers get 403 or 404
PROVINCE = "province"  # the path or query names province 20: other provinces get 403
INSTITUTION_CODE = "institution"  # DESKİ in the path: another institution (and a supervisor
# of another province) gets 403

READERS = {R.officer, R.supervisor, R.institution, R.governor}
INBOX = {R.institution, R.supervisor}


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role] | str  # who passes besides the admin, or PUBLIC / PAGE
    scope: str = ROLE_ONLY


def rule(roles: set[Role] | str, scope: str = ROLE_ONLY) -> Rule:
    return Rule(roles if isinstance(roles, str) else frozenset(roles), scope)


OPS = {
    "GET /docs": rule(PUBLIC),
    "GET /docs/oauth2-redirect": rule(PUBLIC),
    "GET /redoc": rule(PUBLIC),
    "GET /openapi.json": rule(PUBLIC),
    "GET /healthz": rule(PUBLIC),
    "GET /readyz": rule(PUBLIC),
    "GET /metrics": rule(PUBLIC),
    "GET /asyncapi": rule(PUBLIC),
}

# METHOD path → who may (admin always may). Audit routes (the auditor's) match AUDIT below.
POLICY: dict[str, dict[str, Rule]] = {
    "intake": OPS
    | {
        "POST /api/v1/applications": rule(PUBLIC),  # staff channels check the body's token
        "GET /api/v1/applications/{application_id}": rule({R.officer, R.supervisor}, BY_ID),
        "POST /api/v1/verifications": rule(PUBLIC),
        "POST /api/v1/verifications/{verification_id}/confirm": rule(PUBLIC),
        "POST /api/v1/attachments": rule(PUBLIC),
        "POST /api/v1/kvkk/verilerim": rule(PUBLIC),  # the citizen's e-Devlet assertion
        "GET /api/v1/applications/{application_id}/attachments": rule(
            {R.officer, R.supervisor, R.institution}, BY_ID
        ),
        "GET /api/v1/applications/{application_id}/attachments/{attachment_id}": rule(
            {R.officer, R.supervisor, R.institution}, BY_ID
        ),
        "GET /api/v1/applications/{application_id}/receipt.pdf": rule(
            {R.officer, R.counter_officer, R.supervisor}, BY_ID
        ),
        "GET /api/v1/catalogue": rule(PUBLIC),
        "GET /api/v1/session": rule({R.officer, R.counter_officer}),
        "GET /basvuru": rule(PUBLIC),
        "GET /gise": rule(PUBLIC),
        "GET /open311/v2/discovery.{fmt}": rule(PUBLIC),
        "GET /open311/v2/services.{fmt}": rule(PUBLIC),
        "GET /open311/v2/services/{service_code}.{fmt}": rule(PUBLIC),
        "POST /open311/v2/requests.{fmt}": rule(PUBLIC),
        "GET /open311/v2/requests.{fmt}": rule(PUBLIC),
        "GET /open311/v2/requests/{service_request_id}.{fmt}": rule(PUBLIC),
    },
    "routing": OPS
    | {
        "GET /api/v1/taxonomy": rule(PUBLIC),
        "POST /api/v1/routing/suggest": rule(PUBLIC),
        "GET /api/v1/routing/pending": rule({R.officer, R.routing_officer, R.supervisor}),
        "POST /api/v1/routing/{application_id}/route": rule({R.officer, R.routing_officer}, BY_ID),
    },
    "tracking": OPS
    | {
        "GET /api/v1/track/{application_number}": rule(PUBLIC),
        "POST /api/v1/track/{application_number}/information": rule(PUBLIC),
        "GET /api/v1/institutions/{code}/applications": rule(INBOX, INSTITUTION_CODE),
        "GET /api/v1/institutions/{code}/applications/{application_id}": rule(
            INBOX, INSTITUTION_CODE
        ),
        **{
            f"POST /api/v1/institutions/{{code}}/applications/{{application_id}}/{act}": rule(
                {R.institution}, INSTITUTION_CODE
            )
            for act in (
                "open",
                "assign",
                "information-request",
                "response",
                "return",
                "forward",
                "split",
            )
        },
        "POST /api/v1/applications/{application_id}/unmask": rule({R.supervisor}, BY_ID),
        "GET /api/v1/approvals": rule({R.supervisor}),
        "POST /api/v1/approvals/{application_id}/approve": rule({R.supervisor}, BY_ID),
        "POST /api/v1/approvals/{application_id}/send-back": rule({R.supervisor}, BY_ID),
        "POST /api/v1/applications/{application_id}/extension": rule({R.supervisor}, BY_ID),
        "GET /api/v1/session": rule(INBOX),
        "GET /api/v1/directory/{province_code}": rule(INBOX, PROVINCE),
        "GET /takip": rule(PUBLIC),
        "POST /takip/bilgi": rule(PUBLIC),
        "GET /kurum": rule(PUBLIC),
        "GET /p/{token}": rule(PUBLIC),
        "POST /p/{token}": rule(PUBLIC),
        "GET /api/v1/calendar": rule(PUBLIC),
        "GET /api/v1/calendar/versions": rule(set()),
        "POST /api/v1/calendar/leave-days": rule(set()),
        "DELETE /api/v1/calendar/leave-days/{date}": rule(set()),
    },
    "notification": OPS
    | {
        "GET /api/v1/notifications/{idempotency_key:path}": rule({R.supervisor}),
        "POST /api/v1/notifications/{idempotency_key:path}/resend": rule(set()),
        "GET /api/v1/sms/dlr": rule(PUBLIC),  # the gateway's signed callback
        "GET /api/v1/templates": rule({R.supervisor}),
        "GET /api/v1/templates/{name}/{channel}/preview": rule({R.supervisor}),
        "POST /api/v1/templates/{name}/{channel}/preview": rule({R.supervisor}),
        "GET /eposta/ayril": rule(PUBLIC),
        "POST /eposta/ayril": rule(PUBLIC),
    },
    "reporting": OPS
    | {
        **{
            f"GET /api/v1/reports/{name}": rule(READERS, PROVINCE)
            for name in ("summary", "export.csv", "export.xlsx", "monthly.pdf", "chronic")
        },
        "GET /giris": rule(PUBLIC),
        "POST /giris": rule(PUBLIC),
        "POST /cikis": rule(PUBLIC),
        "GET /static/pano.css": rule(PUBLIC),
        "GET /pano": rule(PAGE),
        "GET /pano/kronik": rule(PAGE),
        "GET /rapor": rule(PUBLIC),
    },
}
# Routing's taxonomy administration: administrators only, every route under the prefix.
ADMIN_PREFIXES = {"routing": ("/api/v1/admin/taxonomy",)}
# The audit log: the auditor reads it (and the admin); nobody else, in any service.
AUDIT = re.compile(r"^/api/v1/audit(/|$)")


def rule_for(service: str, key: str) -> Rule | None:
    path = key.split(" ", 1)[1]
    if AUDIT.match(path):
        return rule({R.auditor})
    if any(path.startswith(p) for p in ADMIN_PREFIXES.get(service, ())):
        return rule(set())
    return POLICY[service].get(key)


# --- filling the paths -------------------------------------------------------------------------

PARAMS = {
    "application_id": UNKNOWN_ID,
    "attachment_id": "00000000-0000-4000-8000-00000000ef01",
    "verification_id": "00000000-0000-4000-8000-00000000ef02",
    "province_code": str(HOME),
    "number": "1",
    "date": "2031-01-02",
    "idempotency_key:path": "matris-yok",
    "name": "application_received",
    "channel": "sms",
    "fmt": "json",
    "service_code": "ZZ-YOK",
    "service_request_id": "matris-yok",
    "application_number": "20-2026-0000001-0",
    "token": "gecersiz-baglanti",
}
PARAM = re.compile(r"\{([^}]+)\}")


def concrete(path: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "code":
            # An institution's inbox names DESKİ; an edit of the taxonomy a code that is none.
            return INSTITUTION if path.startswith("/api/v1/institutions/") else "ZZ-YOK"
        assert name in PARAMS, f"no value for the path parameter {name!r} of {path}"
        return PARAMS[name]

    return PARAM.sub(fill, path)


def query_for(path: str) -> dict[str, str]:
    return {"province_code": str(HOME)} if path.startswith("/api/v1/reports/") else {}


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path) of every route, HEAD left out; static folders are not routes."""
    found: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            continue
        methods = context.methods or set()
        for method in sorted(methods - {"HEAD"}):
            found.append((method, context.path))
        if not isinstance(route, APIRoute) and not methods:
            found.append(("GET", context.path))
    return sorted(set(found))


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value the schema accepts (required fields only), so a protected route's own checks,
    not the body's validation, decide what a caller gets."""
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        return example(options[0], components) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(properties[name], components) for name in schema.get("required", [])}
    if kind == "array":
        return [
            example(schema["items"], components) for _ in range(max(schema.get("minItems", 0), 2))
        ]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if schema.get("format") == "date":
        return "2031-01-02"
    text = "Rol matrisi denemesi, değişiklik yapılmaz."
    return (text * 10)[
        : max(schema.get("minLength", 0), min(len(text), schema.get("maxLength", 99)))
    ]


def valid_bodies(app: FastAPI, service: str) -> dict[str, Any]:
    """A valid JSON body for every protected route that takes one (public routes get {}:
    a valid body there would really submit something)."""
    spec = app.openapi()
    components = spec.get("components", {}).get("schemas", {})
    bodies: dict[str, Any] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            key = f"{method.upper()} {path}"
            rule_ = rule_for(service, key)
            content = operation.get("requestBody", {}).get("content", {})
            if rule_ is None or rule_.roles == PUBLIC or "application/json" not in content:
                continue
            bodies[key] = example(content["application/json"]["schema"], components)
    return bodies | {k: v for k, v in BODIES.items() if k in bodies}


# Where the schema alone does not make a valid body (a rule across fields).
BODIES: dict[str, Any] = {
    "POST /api/v1/institutions/{code}/applications/{application_id}/assign": {
        "unit": "Matris Birimi"
    },
}


# --- what is expected --------------------------------------------------------------------------


def expected(rule_: Rule, caller: Caller) -> set[str]:
    """The outcomes this caller may get: "ok" (anything but 401/403), "401", "403"."""
    if rule_.roles == PUBLIC:
        return {"ok", "401", "403"}  # the body's credentials (e-Devlet, a signature) decide
    if rule_.roles == PAGE:
        if caller.role is None:
            return {"ok"}  # the page asks to sign in
        return {"ok"} if caller.role is R.admin or caller.role in READERS else {"403"}
    if caller.role is None:
        return {"401"}
    assert isinstance(rule_.roles, frozenset)
    if caller.role is not R.admin and caller.role not in rule_.roles:
        return {"403"}
    if caller.role is R.admin:
        return {"ok"}
    out_of_scope = (caller.province is not None and caller.province != HOME) or (
        caller.role is R.institution and caller.institution != INSTITUTION
    )
    if rule_.scope == PROVINCE and caller.province is not None and caller.province != HOME:
        return {"403"}
    if rule_.scope == INSTITUTION_CODE and out_of_scope:
        return {"403"}
    if rule_.scope == BY_ID and (out_of_scope or caller.role is R.institution):
        # An unknown id: a 404 tells nothing; nor does a 403 to an institution (the
        # application cannot be shown to be theirs).
        return {"403", "ok"}
    return {"ok"}


def outcome(status: int) -> str:
    if status >= 500:
        return "5xx"
    return str(status) if status in (401, 403) else "ok"


# --- the services ------------------------------------------------------------------------------


async def wait_until(check: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running(
    name: str, settings: Settings, consumes: list[str], **options: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    module = __import__(f"services.{name}.app", fromlist=["build_app"])
    group = await fresh_consumer_group(settings.kafka_bootstrap, name, consumes)
    app = module.build_app(settings, consumer_group=group, **options)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.started.wait(), 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as http:
            yield app, http


@pytest.fixture(scope="module")
async def services(settings: Settings) -> AsyncIterator[dict[str, tuple[FastAPI, Any]]]:
    quiet = settings.model_copy(update={"auto_route_threshold": 1.0})
    # Denizli's institutions, as routing announces them: tracking needs them to tell which
    # province DESKİ is in (a supervisor of another province is refused by it).
    event = taxonomy_published(default_registry().for_province(HOME))
    await produce(settings.kafka_bootstrap, topics.TAXONOMY, event.to_bytes(), str(HOME))
    async with AsyncExitStack() as stack:
        apps: dict[str, tuple[FastAPI, Any]] = {}
        apps["intake"] = await stack.enter_async_context(
            running_intake(
                settings,
                await fresh_consumer_group(
                    settings.kafka_bootstrap, "intake", [topics.SUBMISSIONS]
                ),
            )
        )
        apps["routing"] = await stack.enter_async_context(
            running("routing", quiet, [topics.RECEIVED, topics.STATUS])
        )
        apps["tracking"] = await stack.enter_async_context(
            running(
                "tracking",
                settings,
                [topics.RECEIVED, topics.ROUTED, topics.RESPONSES, topics.NOTIFICATION_RESULTS],
                watch_interval=5.0,
            )
        )
        apps["notification"] = await stack.enter_async_context(
            running("notification", settings, [topics.NOTIFICATION_REQUESTS])
        )
        apps["reporting"] = await stack.enter_async_context(
            running(
                "reporting",
                settings,
                [topics.RECEIVED, topics.ROUTED, topics.STATUS, topics.DEADLINES],
            )
        )
        tracking = apps["tracking"][0].state.tracking
        await wait_until(lambda: tracking.province_of(INSTITUTION) == HOME)
        yield apps


async def request_as(
    http: httpx.AsyncClient,
    caller: Caller,
    method: str,
    url: str,
    params: dict[str, str],
    body: dict[str, Any] | None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {caller.token}"} if caller.token else {}
    if body is None:
        return await http.request(method, url, headers=headers, params=params)
    return await http.request(method, url, headers=headers, params=params, json=body)


async def test_every_role_against_every_endpoint(
    services: dict[str, tuple[FastAPI, httpx.AsyncClient]], settings: Settings
) -> None:
    everyone = callers(settings)
    counts: dict[str, Counter[str]] = {}
    unlisted: list[str] = []
    wrong: list[str] = []
    server_errors: list[str] = []
    unprotected: list[str] = []
    for service, (app, http) in services.items():
        tally: Counter[str] = Counter()
        routes = routes_of(app)
        tally["routes"] = len(routes)
        bodies = valid_bodies(app, service)
        for method, path in routes:
            key = f"{method} {path}"
            rule_ = rule_for(service, key)
            if rule_ is None:
                unlisted.append(f"{service}: {key}")
                continue
            url = concrete(path)

            params = query_for(path)
            body = bodies.get(key, {}) if method in ("POST", "PUT", "PATCH") else None
            # Every caller of one route at once: the answers do not depend on each other, and
            # the run waits on the database, not the processor.
            answers = await asyncio.gather(
                *(request_as(http, caller, method, url, params, body) for caller in everyone)
            )
            for caller, response in zip(everyone, answers, strict=True):
                got = outcome(response.status_code)
                if path == "/readyz" and response.status_code == 503:
                    got = "ok"  # not ready is an answer, not a failure
                tally["calls"] += 1
                tally[got] += 1
                where = f"{service}: {key} as {caller.name} → {response.status_code}"
                if got == "5xx":
                    server_errors.append(f"{where} {response.text[:200]}")
                    continue
                want = expected(rule_, caller)
                if got not in want:
                    if caller.role is None and got == "ok":
                        unprotected.append(where)
                    else:
                        wrong.append(f"{where} (expected {'/'.join(sorted(want))})")
        counts[service] = tally

    lines = [
        "Rol × uç nokta matrisi (tests/integration/test_role_matrix.py)",
        f"çağıranlar: {len(everyone)} ({sum(c.role is None for c in everyone)} geçersiz/yok "
        f"anahtar: süresi dolmuş, yanlış imzalı, bozuk, alg none, geçersiz rol/il/kurum, "
        f"RS256; {sum(c.role is not None for c in everyone)} geçerli rol kapsamı)",
        f"{'servis':<14}{'yol':>6}{'çağrı':>8}{'izin':>8}{'401':>7}{'403':>7}{'5xx':>6}",
    ]
    total: Counter[str] = Counter()
    for service, tally in counts.items():
        total.update(tally)
        lines.append(
            f"{service:<14}{tally['routes']:>6}{tally['calls']:>8}{tally['ok']:>8}"
            f"{tally['401']:>7}{tally['403']:>7}{tally['5xx']:>6}"
        )
    lines.append(
        f"{'toplam':<14}{total['routes']:>6}{total['calls']:>8}{total['ok']:>8}"
        f"{total['401']:>7}{total['403']:>7}{total['5xx']:>6}"
    )
    lines.append(
        f"politikadan sapma: {len(wrong)}, korumasız: {len(unprotected)}, "
        f"tabloda olmayan yol: {len(unlisted)}"
    )
    summary = "\n".join(lines)
    details = "\n".join(
        [
            *["", "5xx:", *server_errors, "", "sapma:", *wrong],
            *["", "korumasız:", *unprotected, "", "tabloda yok:", *unlisted],
        ]
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(summary + "\n" + details + "\n", encoding="utf-8")
    print("\n" + summary)

    assert not server_errors, "\n".join(server_errors[:40])
    assert not unprotected, "\n".join(unprotected[:40])
    assert not unlisted, "routes without a policy row:\n" + "\n".join(unlisted)
    assert not wrong, "\n".join(wrong[:80])
    assert total["calls"] > 100 * len(everyone)


def test_the_policy_names_only_routes_that_exist() -> None:
    """A policy row for a route that is gone is a stale row (checked without the stack)."""
    settings = Settings()
    existing: set[str] = set()
    for service in POLICY:
        module = __import__(f"services.{service}.app", fromlist=["build_app"])
        app = module.build_app(settings)
        existing |= {f"{service} {m} {p}" for m, p in routes_of(app)}
    optional: set[str] = set()
    stale = [
        f"{service} {key}"
        for service, rules in POLICY.items()
        for key in rules
        if f"{service} {key}" not in existing and key not in optional
    ]
    assert not stale, stale
