"""Prints a bearer token for local use: `python -m services.common.devtoken --role officer`;
or, with `--edevlet TCKN AD SOYAD`, an e-Devlet identity assertion signed with the local
development key (what the e-Devlet gateway hands a citizen who logged in)."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import jwt

from services.common.auth import Role, issue_token
from services.common.settings import Settings, get_settings

DEV_EDEVLET_PRIVATE_KEY = files("services.common").joinpath("devkeys/edevlet_dev_private.pem")


def edevlet_assertion(
    settings: Settings,
    *,
    tckn: str,
    first_name: str,
    last_name: str,
    ttl: timedelta = timedelta(minutes=10),
    jti: str | None = None,
    private_key: str | None = None,
) -> str:
    """An identity assertion as the e-Devlet gateway signs it (local development key)."""
    now = datetime.now(UTC)
    claims = {
        "iss": settings.edevlet_issuer,
        "aud": settings.edevlet_audience,
        "sub": tckn,
        "given_name": first_name,
        "family_name": last_name,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": jti or str(uuid.uuid4()),
    }
    key = private_key or DEV_EDEVLET_PRIVATE_KEY.read_text()
    return jwt.encode(claims, key, algorithm="RS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Yerel kullanım için oturum anahtarı üretir.")
    parser.add_argument("--role", choices=[r.value for r in Role])
    parser.add_argument(
        "--edevlet", nargs=3, metavar=("TCKN", "AD", "SOYAD"), help="e-Devlet kimlik onayı üretir"
    )
    parser.add_argument("--institution", help="kurum kodu (role=institution için gerekli)")
    parser.add_argument("--province", type=int, help="il plaka kodu, ör. 20")
    parser.add_argument("--subject", default=None, help="kullanıcı adı (varsayılan: rolün adı)")
    parser.add_argument("--hours", type=int, default=12, help="geçerlilik süresi (saat)")
    parser.add_argument("--unit", help="kurumun alt birimi (role=institution, isteğe bağlı)")
    parser.add_argument("--district", help="ilçe (role=counter_officer, isteğe bağlı)")
    args = parser.parse_args(argv)
    if get_settings().production:
        parser.exit(
            2,
            "Geliştirme oturum anahtarları üretim kipinde (AK_ENVIRONMENT=production) "
            "üretilmez: görevliler kimlik sağlayıcısından giriş yapar.\n",
        )
    if args.edevlet:
        tckn, first_name, last_name = args.edevlet
        print(
            edevlet_assertion(get_settings(), tckn=tckn, first_name=first_name, last_name=last_name)
        )
        return
    if not args.role:
        parser.error("--role veya --edevlet gerekir")
    role = Role(args.role)
    if role is Role.institution and not args.institution:
        parser.error("--role institution için --institution KOD gerekir")
    token = issue_token(
        get_settings(),
        subject=args.subject or f"dev-{role.value}",
        role=role,
        institution=args.institution,
        province=args.province,
        unit=args.unit,
        district=args.district,
        ttl=timedelta(hours=args.hours),
    )
    print(token)


if __name__ == "__main__":
    main()
