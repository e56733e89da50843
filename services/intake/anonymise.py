"""`python -m services.intake anonymise [--dry-run]`: anonymise now the applications whose
retention period has passed (what each intake process also does hourly), with progress."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.common.audit import AuditLog
from services.common.mongo import make_client, service_database
from services.common.retention import RetentionJob
from services.common.settings import Settings, get_settings
from services.intake.store import RETENTION

SERVICE = "intake"


async def anonymise(settings: Settings, *, dry_run: bool, days: int, batch: int) -> int:
    client = make_client(settings, SERVICE)
    try:
        db = service_database(client, settings, SERVICE)
        job = RetentionJob(SERVICE, db, [RETENTION], days=days, audit=AuditLog(db, SERVICE))
        verb = "anonimleştirilecek" if dry_run else "anonimleştirildi"

        def progress(collection: str, count: int) -> None:
            print(f"  {collection}: {count} belge {verb}", flush=True)

        print(
            f"Saklama süresi {days} gün: {job.cutoff():%Y-%m-%d %H:%M} UTC öncesinde alınan "
            "başvurular" + (" (deneme: hiçbir şey değiştirilmez)" if dry_run else ""),
            flush=True,
        )
        report = await job.run(dry_run=dry_run, batch=batch, progress=progress)
        print(f"Toplam: {report.total} belge {verb}.", flush=True)
        return report.total
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m services.intake anonymise",
        description="Saklama süresi dolan başvurulardaki kişisel verileri anonimleştirir.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="yalnız say, hiçbir belgeyi değiştirme"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=settings.personal_data_retention_days,
        help="saklama süresi, gün (varsayılan: AK_PERSONAL_DATA_RETENTION_DAYS)",
    )
    parser.add_argument("--batch", type=int, default=500, help="bir seferde işlenen belge sayısı")
    args = parser.parse_args(argv)
    if args.days <= 0:
        parser.exit(2, "Saklama süresi 0: anonimleştirme kapalı.\n")
    asyncio.run(anonymise(settings, dry_run=args.dry_run, days=args.days, batch=args.batch))


if __name__ == "__main__":
    main(sys.argv[1:])
