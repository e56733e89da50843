"""Prints a bearer token for local use: `python -m services.common.devtoken --role officer`."""

from __future__ import annotations

import argparse
from datetime import timedelta

from services.common.auth import Role, issue_token
from services.common.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Yerel kullanım için oturum anahtarı üretir.")
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--institution", help="kurum kodu (role=institution için gerekli)")
    parser.add_argument("--province", type=int, help="il plaka kodu, ör. 20")
    parser.add_argument("--subject", default=None, help="kullanıcı adı (varsayılan: rolün adı)")
    parser.add_argument("--hours", type=int, default=12, help="geçerlilik süresi (saat)")
    args = parser.parse_args(argv)
    role = Role(args.role)
    if role is Role.institution and not args.institution:
        parser.error("--role institution için --institution KOD gerekir")
    token = issue_token(
        get_settings(),
        subject=args.subject or f"dev-{role.value}",
        role=role,
        institution=args.institution,
        province=args.province,
        ttl=timedelta(hours=args.hours),
    )
    print(token)


if __name__ == "__main__":
    main()
