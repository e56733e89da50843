"""The deadline watcher with many open applications: a scheduler pass must cost what is due,
not what is open.

    .venv/bin/python bench/deadlines.py                          # 10k, 100k and 1M open
    .venv/bin/python bench/deadlines.py --sizes 2000,20000 --due 50 --passes 1   # quick

Against the stack's MongoDB for tracking (`make run`, or the test stack's environment). The
bench fills a database of its own (prefix `benchdl<hex>`, dropped at the end) with N open
applications in tracking's real document shape (made by the domain from intake's and routing's
events, written with the store's own serialisation, 1,000 a bulk insert), their deadlines spread
over the coming weeks, and D of them due now (half missed, half at their one-day warning).
Then it runs scheduler passes through the real code path, `Tracking.check_deadlines`, with the
store's outbox delivering to the stack's Kafka as the tracking user (the status, deadline and
institution e-mail events a pass causes, with a static copy of routing's Denizli directory).

Printed per N: the wall time of a pass over D due (median of --passes), of an idle pass (none
due), and the documents and index keys nx-27017 examined in a pass, counted by SQLite on the
database's own file (bench/nx_examined.py says how: nx-27017 has no `explain` statistics).
The sizes grow in one database (10k, then 90k more, ...), and the ratios largest ÷ smallest
close the run: the documents examined must stay ~D while N grows 100-fold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.nx_examined import Examined, ExaminedCounter, nx_data_dir
from services.common.application_number import format_number
from services.common.events import (
    ApplicantContact,
    ApplicationReceived,
    ApplicationRouted,
    ApplicationType,
    Channel,
    TaxonomyPublished,
)
from services.common.messaging import Publisher, make_broker
from services.common.mongo import Document
from services.common.pii import PiiCipher
from services.common.settings import Settings
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from services.tracking import domain
from services.tracking.handlers import Tracking
from services.tracking.store import DUE_KEYS, ApplicationStore, to_doc

PROVINCE = 20  # Denizli
YEAR = datetime.now(UTC).year


def say(text: str) -> None:
    print(text, flush=True)


class StaticDirectory:
    """Routing's announcement of Denizli, as tracking's directory holds it after the topic."""

    def __init__(self, taxonomy: TaxonomyPublished) -> None:
        self.taxonomy = taxonomy

    def province(self, province_code: int) -> TaxonomyPublished | None:
        return self.taxonomy if province_code == self.taxonomy.province_code else None

    def provinces(self) -> list[TaxonomyPublished]:
        return [self.taxonomy]


@dataclass
class Pass:
    seconds: float
    handled: int
    examined: Examined | None = None


class Population:
    """Open applications in the document shape tracking stores, made from one real record."""

    SUBJECTS = (
        "Mahallemizde su kesintisi",
        "Kaldırım taşları kırık",
        "Sokak lambası yanmıyor",
        "Park bakımsız, oyun grupları kırık",
        "Otobüs saatlerine uyulmuyor",
        "Çöp konteyneri haftalardır boşaltılmadı",
    )

    def __init__(self, tracking: Tracking, cipher: PiiCipher, taxonomy: TaxonomyPublished) -> None:
        self.store = tracking.store
        self.rng = random.Random(20)
        self.categories = [(h.code, c.code) for h in taxonomy.headings for c in h.categories]
        self.institutions = taxonomy.institutions
        self.districts = taxonomy.districts or ["Merkezefendi"]
        self.sequence = 0
        self.rules = tracking.rules()
        self.template = self._record(tracking, cipher)

    def _record(self, tracking: Tracking, cipher: PiiCipher) -> domain.Application:
        """One application as the domain makes it from intake's and routing's events."""
        received_at = datetime.now(UTC) - timedelta(days=2)
        phone = "+905321234567"
        heading, category = self.categories[0]
        institution = self.institutions[0]
        received = ApplicationReceived(
            application_id=str(uuid.uuid4()),
            application_number=format_number(PROVINCE, YEAR, 1),
            producer="bench-intake",
            channel=Channel.web,
            application_type=ApplicationType.sikayet,
            province_code=PROVINCE,
            district=self.districts[0],
            subject=self.SUBJECTS[0],
            text="Okul önündeki kaldırım taşları kırık, çocuklar her gün düşüyor. "
            "Belediyeye iki kez bildirdik, kimse gelmedi. Onarılmasını rica ediyoruz.",
            applicant=ApplicantContact(
                tckn_masked="38*******26", first_name="Zeynep", last_name="Karaağaçlı", phone=phone
            ),
            received_at=received_at,
        )
        receive = domain.Receive(
            received,
            phone_enc=cipher.encrypt(phone),
            phone_index=tracking.phone_index(received.application_id, phone[-4:]),
        )
        first = domain.apply(None, receive, f"received:{received.event_id}", tracking.rules())
        assert first.state is not None
        routed = ApplicationRouted(
            application_id=received.application_id,
            application_number=received.application_number,
            producer="bench-routing",
            category_code=category,
            heading_code=heading,
            institution_code=institution.code,
            institution_kind=institution.kind,
            institution_name=institution.name,
            routed_by="auto",
            deadline_at=received_at + timedelta(days=9),
        )
        made = domain.apply(first.state, routed, f"routed:{routed.event_id}", tracking.rules())
        assert made.state is not None and made.state.miss_due_at is not None, "not watched"
        return made.state

    def application(self, received_at: datetime) -> domain.Application:
        """A record received at `received_at`, with the deadline the domain's rules give it."""
        self.sequence += 1
        _, category = self.rng.choice(self.categories)
        institution = self.rng.choice(self.institutions)
        state = replace(
            self.template,
            application_id=str(uuid.uuid4()),
            application_number=format_number(PROVINCE, YEAR, self.sequence),
            subject=self.rng.choice(self.SUBJECTS),
            district=self.rng.choice(self.districts),
            category_code=category,
            institution_code=institution.code,
            institution_name=institution.name,
            received_at=received_at,
            routed_at=received_at + timedelta(minutes=3),
        )
        deadline = domain.computed_deadline(state, self.rules)
        assert deadline is not None
        return replace(state, deadline_at=deadline)

    def document(self, state: domain.Application) -> Document:
        """The document the store writes for a new record (`ApplicationStore.save`)."""
        assert isinstance(self.store, ApplicationStore)
        doc = to_doc(state, 1)
        doc.update(self.store.outbox.fields(state.application_id, ())[0])
        doc["write_id"] = uuid.uuid4().hex
        return doc

    def later(self, now: datetime) -> Document:
        """An application received in the last few days: its warning and deadline are days to
        a couple of weeks away (not due while the bench runs)."""
        for _ in range(100):
            received = now - timedelta(hours=self.rng.uniform(0, 96))
            doc = self.document(self.application(received))
            if _next_due(doc) > (now + timedelta(hours=12)).timestamp():
                return doc
        raise SystemExit("no receipt time gives a deadline that is not due soon")

    def due(self, now: datetime, n: int) -> list[Document]:
        """n applications due now: half missed their deadline, half are at their warning."""
        stamp = now.timestamp()
        out: list[Document] = []
        while len(out) < n:
            missed = len(out) % 2 == 0
            days = self.rng.uniform(12, 20) if missed else self.rng.uniform(3, 12)
            doc = self.document(self.application(now - timedelta(days=days)))
            warn, miss = doc[DUE_KEYS["warn_due_at"]], doc[DUE_KEYS["miss_due_at"]]
            if miss is None:
                continue
            if (miss <= stamp) if missed else (warn is not None and warn <= stamp < miss):
                out.append(doc)
        return out


async def load(apps: Any, population: Population, count: int, batch: int, total: int) -> None:
    """Insert `count` not-due applications, `batch` a bulk insert, two bulks in flight."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    done = 0
    last_said = 0.0
    in_flight: set[asyncio.Task[Any]] = set()
    while done < count:
        size = min(batch, count - done)
        docs = [population.later(now) for _ in range(size)]
        if len(in_flight) >= 2:
            finished, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
            for task in finished:
                task.result()
        in_flight.add(asyncio.create_task(apps.insert_many(docs, ordered=False)))
        done += size
        elapsed = time.perf_counter() - started
        if elapsed - last_said >= 10 or done == count:
            last_said = elapsed
            say(
                f"    loading: {total - count + done:>9,} open "
                f"({done / max(elapsed, 1e-9):,.0f} docs/s)"
            )
    for task in in_flight:
        await task


async def arm(apps: Any, population: Population, due: int) -> list[str]:
    """Put `due` applications due now into the store (and check the store sees them so)."""
    now = datetime.now(UTC)
    docs = population.due(now, due)
    if not all(_next_due(doc) <= now.timestamp() for doc in docs):
        raise SystemExit("the store does not see the due applications as due")
    await apps.insert_many(docs)
    return [str(doc["_id"]) for doc in docs]


def _next_due(doc: Document) -> float:
    """When the watcher would take this document next (its earliest stored due time)."""
    times = [doc[key] for key in DUE_KEYS.values() if doc.get(key) is not None]
    return min(times, default=float("inf"))


async def disarm(apps: Any, ids: list[str]) -> None:
    await apps.delete_many({"_id": {"$in": ids}})


async def one_pass(tracking: Tracking, counter: ExaminedCounter, *, counted: bool) -> Pass:
    counter.enabled = counted
    try:
        started = time.perf_counter()
        handled = await tracking.check_deadlines(datetime.now(UTC))
        seconds = time.perf_counter() - started
    finally:
        counter.enabled = False
    return Pass(seconds, handled, counter.take() if counted else None)


@dataclass
class Row:
    size: int
    due_pass: float
    idle_pass: float
    examined: Examined
    idle_examined: Examined
    handled: int


async def measure(
    tracking: Tracking,
    apps: Any,
    population: Population,
    counter: ExaminedCounter,
    size: int,
    due: int,
    passes: int,
) -> Row:
    timed: list[float] = []
    for _ in range(passes):
        ids = await arm(apps, population, due)
        result = await one_pass(tracking, counter, counted=False)
        await disarm(apps, ids)
        if result.handled != due:
            raise SystemExit(f"a pass handled {result.handled} of {due} due applications")
        timed.append(result.seconds)
    ids = await arm(apps, population, due)
    counted = await one_pass(tracking, counter, counted=True)
    await disarm(apps, ids)
    if counted.handled != due:
        raise SystemExit(f"the counted pass handled {counted.handled} of {due}")
    idle_times = [(await one_pass(tracking, counter, counted=False)).seconds for _ in range(3)]
    idle = await one_pass(tracking, counter, counted=True)
    if idle.handled:
        raise SystemExit(f"an idle pass handled {idle.handled} applications")
    assert counted.examined is not None and idle.examined is not None
    return Row(
        size,
        statistics.median(timed),
        statistics.median(idle_times),
        counted.examined,
        idle.examined,
        counted.handled,
    )


def report(row: Row) -> None:
    ex = row.examined
    say(
        f"  N = {row.size:>9,}: pass over {row.handled} due {row.due_pass * 1000:8.1f} ms "
        f"({row.due_pass / row.handled * 1000:.2f} ms each), idle pass "
        f"{row.idle_pass * 1000:6.1f} ms"
    )
    say(
        f"      examined in the pass: {ex.docs:,} documents, {ex.keys:,} index keys over "
        f"{ex.commands} commands ({ex.docs / max(row.handled, 1):.2f} documents per due item); "
        f"idle pass: {row.idle_examined.docs} documents, {row.idle_examined.keys} keys"
    )
    for command, docs in sorted(ex.by_command.items()):
        say(f"        {command:<14} {docs:>7,} documents")
    for plan, n in sorted(ex.plans.items(), key=lambda p: -p[1]):
        say(f"        {n:>5} × {plan}")
    if ex.scanned or row.idle_examined.scanned:
        say("      !! a statement read a whole table (SCAN)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="open applications at each step, ascending, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--due", type=int, default=200, help="due now at each pass (D)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per size (median)")
    parser.add_argument("--batch", type=int, default=1000, help="documents per insert_many")
    parser.add_argument(
        "--data-root",
        default=os.environ.get("AK_DATA_DIR", ".ak/run"),
        help="the local stack's data folder (to find nx-27017's files; default: $AK_DATA_DIR)",
    )
    args = parser.parse_args()
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    if args.sizes != sorted(args.sizes) or args.sizes[0] <= 0:
        parser.error("--sizes must be positive and ascending")
    if not 0 < args.due <= 200:
        # One pass takes up to WATCH_BATCH (200) of each kind; half are of each here.
        parser.error("--due must be within 1..200")
    return args


def main() -> int:
    args = arguments()
    settings = Settings(db_prefix=f"benchdl{uuid.uuid4().hex[:8]}")
    database = settings.database_name("tracking")
    uri = settings.mongo_uri_for("tracking")
    # Refused before anything is written unless the server keeps each database in a file of
    # its own: in nx-27017's single-file mode the bench's collections would be the services'.
    data_dir = nx_data_dir(uri, Path(args.data_root).resolve())
    if (data_dir / f"{database}.db").exists():
        raise SystemExit(f"{database} exists already")
    say(f"tracking's MongoDB {uri} (nx-27017, files in {data_dir}); database {database}")
    rows = asyncio.run(run(args, settings, database, uri, data_dir))
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        say(
            f"\nratios, {last.size:,} open ÷ {first.size:,} open "
            f"({last.size // first.size}× as many):"
        )
        say(f"  pass time over {args.due} due: {last.due_pass / first.due_pass:.2f}×")
        say(f"  idle pass time:          {last.idle_pass / first.idle_pass:.2f}×")
        say(
            f"  documents examined:      {last.examined.docs / max(first.examined.docs, 1):.2f}× "
            f"({first.examined.docs} → {last.examined.docs}; D = {args.due})"
        )
    return 0


async def run(
    args: argparse.Namespace, settings: Settings, database: str, uri: str, data_dir: Path
) -> list[Row]:
    counter = ExaminedCounter(database)
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=3000, event_listeners=[counter]
    )
    broker = make_broker(settings, "tracking")
    await broker.start()
    rows: list[Row] = []
    try:
        publisher = Publisher(broker)
        cipher = PiiCipher(settings.pii_key_bytes())
        store = ApplicationStore(client[database], publisher, cipher)
        await store.ensure_indexes()
        taxonomy = taxonomy_published(default_registry().for_province(PROVINCE))
        tracking = Tracking(store, publisher, cipher, settings, directory=StaticDirectory(taxonomy))
        population = Population(tracking, cipher, taxonomy)
        counter.open(data_dir)
        loaded = 0
        for size in args.sizes:
            say(f"\n{size:,} open applications")
            await load(store.apps, population, size - loaded, args.batch, size)
            loaded = size
            counter.refresh_schema()
            row = await measure(
                tracking, store.apps, population, counter, size, args.due, args.passes
            )
            report(row)
            rows.append(row)
    finally:
        counter.close()
        await broker.stop()
        await client.drop_database(database)
        await client.close()
        say(f"\ndropped {database}")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
