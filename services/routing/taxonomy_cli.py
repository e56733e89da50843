"""`python -m services.routing load-taxonomy FILE`: a province's taxonomy file into routing's
store as a new version (the first one for a new province), announced on `acikkapi.taxonomy`.

Running routing processes take it from the announcement; if Kafka cannot be reached now, they
find it in the store within `LiveTaxonomies.POLL_SECONDS` and announce it themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from services.common.auth import Principal, Role
from services.common.messaging import Publisher, make_broker
from services.common.mongo import make_client, service_database
from services.common.settings import Settings, get_settings
from services.routing.admin import TaxonomyAdmin
from services.routing.domain import TaxonomyRegistry
from services.routing.taxonomy_edits import Rejected
from services.routing.taxonomy_store import LiveTaxonomies, TaxonomyStore

SERVICE = "routing"


async def load_file(settings: Settings, path: Path, data: Any, author: str) -> int:
    """Load `data`, read from `path`; prints what happened and returns the exit status."""
    province = data.get("province_code") if isinstance(data, dict) else None
    if not isinstance(province, int):
        print(f"{path}: province_code (plaka kodu) eksik.", file=sys.stderr)
        return 2
    client = make_client(settings, SERVICE)
    broker = make_broker(settings, SERVICE)
    store = TaxonomyStore(service_database(client, settings, SERVICE))
    live = LiveTaxonomies(store, TaxonomyRegistry([]), Publisher(broker), settings)
    admin = TaxonomyAdmin(store, live)
    try:
        await store.ensure_indexes()
        head = await store.head(province)
        try:
            await asyncio.wait_for(broker.start(), 15)
        except Exception as exc:  # the version is still stored; routing announces it
            print(f"Kafka'ya bağlanılamadı ({type(exc).__name__}).", file=sys.stderr)
        principal = Principal(subject=author, role=Role.admin)
        try:
            outcome = await admin.load(province, data, head.version if head else 0, principal)
        except Rejected as exc:
            print(f"{path}: yüklenmedi, dosyada {len(exc.errors)} sorun var:", file=sys.stderr)
            for error in exc.errors:
                print(f"  {error['field'] or '-'}: {error['message']}", file=sys.stderr)
            return 2
    finally:
        await broker.stop()
        await client.close()
    version = outcome.version
    name = version.document.taxonomy.province
    if not outcome.changed:
        print(f"{name} ({province}): dosya {version.version}. sürümle aynı, yeni sürüm yok.")
    elif outcome.published:
        print(f"{name} ({province}): {version.version}. sürüm kaydedildi ve duyuruldu.")
        print(f"  {version.summary}")
    else:
        print(
            f"{name} ({province}): {version.version}. sürüm kaydedildi; duyuruyu yönlendirme "
            "servisi Kafka'ya ulaşınca kendisi yapacak."
        )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.routing load-taxonomy",
        description="Bir ilin görev dağılımı dosyasını yönlendirme deposuna yeni sürüm olarak "
        "yükler ve acikkapi.taxonomy konusunda duyurur.",
    )
    parser.add_argument("file", type=Path, help="taxonomy_<il>.json biçiminde dosya")
    parser.add_argument(
        "--author",
        default=f"cli:{getpass.getuser()}",
        help="değişiklik kaydında görünecek ad (varsayılan: cli:<kullanıcı>)",
    )
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{args.file}: okunamadı ({exc})", file=sys.stderr)
        return 2
    return asyncio.run(load_file(get_settings(), args.file, data, args.author))
