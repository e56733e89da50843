"""Staff tokens of an OpenID Connect provider (services/common/auth.py): a real JWKS endpoint on
a local port serving the public half of keys made here, and tokens good and bad against it,
through `decode_token` and through a FastAPI route's dependency (the status codes)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.common.auth import (
    InvalidClaims,
    Principal,
    Role,
    current_principal,
    decode_token,
    issue_token,
    role_of,
)
from services.common.errors import install_error_handlers
from services.common.settings import Settings

ISSUER = "https://kimlik.denizli.gov.tr/realms/acikkapi"
AUDIENCE = "acikkapi-api"


class Jwks:
    """A JWKS endpoint in a thread: GET / serves the public keys; `hits` counts the fetches."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.hits = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.hits += 1
                body = json.dumps({"keys": list(jwks.keys.values())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "RS256"
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "ES256"
    return jwk | {"kid": kid, "use": "sig"}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks({"rsa-1": public_jwk(RSA_KEY, "rsa-1"), "ec-1": public_jwk(EC_KEY, "ec-1")})
    yield server
    server.close()


@pytest.fixture(scope="module")
def settings(jwks: Jwks) -> Settings:
    return Settings(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=jwks.url,
        jwt_secret="birim-testi-gizli-anahtar-en-az-32-bayt!!",
    )


def oidc_token(
    claims: dict[str, Any] | None = None,
    *,
    key: Any = RSA_KEY,
    kid: str = "rsa-1",
    algorithm: str = "RS256",
    ttl: timedelta = timedelta(minutes=5),
    drop: tuple[str, ...] = (),
) -> str:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ayse.yilmaz",
        "role": "supervisor",
        "prov": 20,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    body |= claims or {}
    for name in drop:
        body.pop(name, None)
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


def test_a_good_rs256_token_makes_its_principal(settings: Settings) -> None:
    token = oidc_token({"role": "institution", "inst": "DESKI", "unit": "MERKEZEFENDI"})
    assert decode_token(settings, token) == Principal(
        subject="ayse.yilmaz",
        role=Role.institution,
        institution="DESKI",
        unit="MERKEZEFENDI",
        province=20,
    )


def test_a_good_es256_token_is_taken(settings: Settings) -> None:
    token = oidc_token({"role": "auditor"}, key=EC_KEY, kid="ec-1", algorithm="ES256")
    assert decode_token(settings, token).role is Role.auditor


def test_keys_are_fetched_once_and_kept(settings: Settings, jwks: Jwks) -> None:
    before = jwks.hits
    for _ in range(5):
        decode_token(settings, oidc_token())
    assert jwks.hits - before <= 1


def test_province_as_digits_and_keycloak_roles(settings: Settings) -> None:
    token = oidc_token(
        {"prov": "35", "realm_access": {"roles": ["offline_access", "governor"]}},
        drop=("role",),
    )
    principal = decode_token(settings, token)
    assert (principal.role, principal.province) == (Role.governor, 35)


def test_a_dotted_role_claim_reads_nested_lists() -> None:
    claims = {"resource_access": {"acikkapi": {"roles": ["routing_officer"]}}}
    assert role_of(claims, "resource_access.acikkapi.roles") == "routing_officer"
    with pytest.raises(InvalidClaims):
        role_of({"roles": ["admin", "auditor"]}, "roles")


@pytest.mark.parametrize(
    ("token", "error"),
    [
        pytest.param(
            lambda: oidc_token(ttl=timedelta(minutes=-5)), jwt.ExpiredSignatureError, id="expired"
        ),
        pytest.param(
            lambda: oidc_token({"aud": "baska-uygulama"}), jwt.InvalidAudienceError, id="audience"
        ),
        pytest.param(
            lambda: oidc_token(drop=("aud",)), jwt.MissingRequiredClaimError, id="no-audience"
        ),
        pytest.param(
            lambda: oidc_token({"iss": "https://evil.example"}), jwt.InvalidIssuerError, id="issuer"
        ),
        pytest.param(lambda: oidc_token(drop=("exp",)), jwt.MissingRequiredClaimError, id="no-exp"),
        pytest.param(
            lambda: oidc_token(key=OTHER_RSA_KEY), jwt.InvalidSignatureError, id="other-key"
        ),
        pytest.param(lambda: oidc_token(kid="unknown"), jwt.PyJWKClientError, id="unknown-kid"),
        pytest.param(
            lambda: oidc_token(key=EC_KEY, kid="rsa-1", algorithm="ES256"),
            jwt.InvalidAlgorithmError,
            id="ec-signed-with-rsa-kid",
        ),
        pytest.param(
            lambda: jwt.encode({"sub": "x", "role": "admin"}, None, algorithm="none"),
            jwt.InvalidAlgorithmError,
            id="alg-none",
        ),
        pytest.param(lambda: "bu.bir-token.degil", jwt.DecodeError, id="malformed"),
        pytest.param(lambda: oidc_token({"role": "padisah"}), InvalidClaims, id="unknown-role"),
        pytest.param(lambda: oidc_token({"prov": "abc"}), InvalidClaims, id="province-abc"),
        pytest.param(lambda: oidc_token({"prov": 99}), InvalidClaims, id="province-99"),
        pytest.param(lambda: oidc_token({"prov": [20]}), InvalidClaims, id="province-list"),
        pytest.param(
            lambda: oidc_token({"role": "institution"}), InvalidClaims, id="no-institution"
        ),
        pytest.param(
            lambda: oidc_token({"inst": 7, "role": "institution"}),
            InvalidClaims,
            id="institution-number",
        ),
        pytest.param(lambda: oidc_token(drop=("sub",)), InvalidClaims, id="no-subject"),
    ],
)
def test_bad_tokens_are_refused(settings: Settings, token: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_token(settings, token())


def test_rs256_is_refused_without_an_identity_provider() -> None:
    with pytest.raises(jwt.InvalidAlgorithmError):
        decode_token(Settings(), oidc_token())


def test_production_takes_no_development_token(settings: Settings) -> None:
    dev = issue_token(settings, subject="x", role=Role.admin)
    assert decode_token(settings, dev).role is Role.admin
    production = settings.model_copy(update={"environment": "production"})
    with pytest.raises(jwt.InvalidAlgorithmError):
        decode_token(production, dev)
    assert decode_token(production, oidc_token()).role is Role.supervisor


def test_a_development_token_with_bad_claims_is_refused(settings: Settings) -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "x", "role": "admin", "iss": settings.jwt_issuer, "exp": now + 60}
    for bad in ({"role": "padisah"}, {"prov": "abc"}, {"role": "institution"}, {"dist": 3}):
        token = jwt.encode(claims | bad, settings.jwt_secret, algorithm="HS256")
        with pytest.raises(InvalidClaims):
            decode_token(settings, token)
    token = jwt.encode(claims | {"sub": 5}, settings.jwt_secret, algorithm="HS256")
    with pytest.raises(jwt.exceptions.InvalidSubjectError):
        decode_token(settings, token)


def app_for(settings: Settings) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    class Runtime:
        pass

    runtime = Runtime()
    runtime.settings = settings  # type: ignore[attr-defined]
    app.state.runtime = runtime

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        return principal.model_dump(mode="json")

    return app


async def call(settings: Settings, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app_for(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get("/me", headers=headers)


async def test_routes_answer_401_with_a_turkish_message(settings: Settings) -> None:
    good = await call(settings, oidc_token({"role": "counter_officer", "dist": "Pamukkale"}))
    assert good.status_code == 200
    assert good.json()["district"] == "Pamukkale"
    for token in (
        None,
        oidc_token(ttl=timedelta(minutes=-5)),
        oidc_token(key=OTHER_RSA_KEY),
        "not-a-token",
        "a.b.c",
    ):
        response = await call(settings, token)
        assert response.status_code == 401, (token, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    unknown = await call(settings, oidc_token({"role": "padisah"}))
    assert unknown.status_code == 401
    assert "rol" in unknown.json()["errors"][0]["message"]
    province = await call(settings, oidc_token({"prov": "abc"}))
    assert province.status_code == 401
    assert province.json()["errors"][0]["message"].endswith("il.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_identity_provider_gives_503(settings: Settings) -> None:
    away = settings.model_copy(
        update={
            "oidc_jwks_url": f"http://127.0.0.1:{free_port()}/jwks",
            "oidc_jwks_timeout_seconds": 2,
        }
    )
    response = await call(away, oidc_token())
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "identity_provider_unavailable"
