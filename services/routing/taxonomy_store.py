"""The taxonomies as routing keeps them: every version of every province in MongoDB (who
changed what, when, and the difference), and the live taxonomies each routing process decides
with, kept current from `acikkapi.taxonomy` and the store.

Versions are numbered per province and never rewritten. A new version is inserted as
`<province>:<n+1>`; two administrators who both edited version n race for that one `_id`, and
the second gets `VersionConflict` instead of overwriting the first (optimistic locking without
a lock). The files under `data/` only seed a province the store has never held.

Every routing process follows `acikkapi.taxonomy` (compacted, read whole without a group). An
announcement it has not seen makes it read the store's newest versions, so an edit made through
any process reaches all of them within one Kafka round trip; the store is also read every
`POLL_SECONDS`, in case an announcement was lost. The topic must end with each province's
newest version: the process that made a version announces it at once, and any process that
finds the topic behind the store (a crash between insert and announcement, two announcements
overtaking each other) announces the newest version again after `GRACE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from services.common import kafka_auth, topics
from services.common.compacted import CompactedView
from services.common.events import TaxonomyPublished
from services.common.messaging import EventPublisher, Outgoing
from services.common.mongo import Database
from services.common.settings import Settings
from services.routing.domain import Taxonomy, TaxonomyRegistry
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy_diff import Change, diff
from services.routing.taxonomy_edits import Retired, TaxonomyDocument

SERVICE = "routing"
SEED_AUTHOR = "sistem"
LINE = {"taxonomy": 0, "retired": 0, "changes": 0}  # a version without its heavy parts

log = logging.getLogger("acikkapi.routing.taxonomy")


class VersionInfo(BaseModel):
    """One line of a province's change log."""

    province_code: int
    version: int
    author: str
    author_role: str
    at: datetime
    action: str  # what the administrator did: "category.update", "load", "seed", ...
    target: str | None = None  # the code it was done to
    summary: str


class TaxonomyVersion(VersionInfo):
    """One version as stored: the change log line, the difference to the version before, and
    the whole taxonomy as it stood after the change."""

    changes: list[Change]
    document: TaxonomyDocument


class VersionConflict(Exception):
    """Someone else made a version first; `current` is the newest one now (None: none)."""

    def __init__(self, current: VersionInfo | None) -> None:
        super().__init__(f"taxonomy changed meanwhile: now {current.version if current else 0}")
        self.current = current


class TaxonomyVersions(Protocol):
    """The versions as the use cases see them (`TaxonomyStore`; a fake in unit tests)."""

    async def head(self, province_code: int) -> TaxonomyVersion | None: ...
    async def get(self, province_code: int, version: int) -> TaxonomyVersion | None: ...
    async def document(self, province_code: int, version: int) -> TaxonomyDocument | None: ...
    async def newest(self, province_code: int) -> VersionInfo | None: ...
    async def log(
        self, province_code: int, limit: int, offset: int
    ) -> tuple[list[VersionInfo], int]: ...
    async def heads(self) -> dict[int, int]: ...
    async def append(self, version: TaxonomyVersion) -> None: ...


def version_id(province_code: int, version: int) -> str:
    return f"{province_code}:{version}"


class TaxonomyStore:
    """`routing_taxonomy_versions`: one document per version of a province's taxonomy."""

    def __init__(self, db: Database) -> None:
        self._versions = db["routing_taxonomy_versions"]

    async def ensure_indexes(self) -> None:
        await self._versions.create_index(
            [("province_code", ASCENDING), ("version", DESCENDING)], unique=True
        )

    async def head(self, province_code: int) -> TaxonomyVersion | None:
        found = await self._versions.find_one(
            {"province_code": province_code}, sort=[("version", DESCENDING)]
        )
        return None if found is None else _version(found)

    async def get(self, province_code: int, version: int) -> TaxonomyVersion | None:
        found = await self._versions.find_one({"_id": version_id(province_code, version)})
        return None if found is None else _version(found)

    async def document(self, province_code: int, version: int) -> TaxonomyDocument | None:
        """Only the taxonomy of a version (what a routing process needs to take it)."""
        found = await self._versions.find_one(
            {"_id": version_id(province_code, version)}, {"taxonomy": 1, "retired": 1}
        )
        if found is None:
            return None
        return TaxonomyDocument.model_validate(
            {"taxonomy": found["taxonomy"], "retired": found.get("retired") or {}}
        )

    async def newest(self, province_code: int) -> VersionInfo | None:
        """The change log's newest line: which version is the newest, without reading it."""
        found = await self._versions.find_one(
            {"province_code": province_code}, LINE, sort=[("version", DESCENDING)]
        )
        return None if found is None else VersionInfo.model_validate(_aware(found))

    async def log(
        self, province_code: int, limit: int, offset: int
    ) -> tuple[list[VersionInfo], int]:
        """The change log, newest first, without the taxonomies themselves."""
        query = {"province_code": province_code}
        cursor = (
            self._versions.find(query, LINE).sort("version", DESCENDING).skip(offset).limit(limit)
        )
        lines = [VersionInfo.model_validate(_aware(d)) for d in await cursor.to_list(limit)]
        return lines, await self._versions.count_documents(query)

    async def heads(self) -> dict[int, int]:
        """The newest version number of every province the store holds."""
        rows = self._versions.aggregate(
            [{"$group": {"_id": "$province_code", "version": {"$max": "$version"}}}]
        )
        return {int(row["_id"]): int(row["version"]) async for row in await rows}

    async def append(self, version: TaxonomyVersion) -> None:
        """Store a new version; VersionConflict if that number is taken (a concurrent edit)."""
        document = version.model_dump(mode="python", exclude={"document"})
        document["_id"] = version_id(version.province_code, version.version)
        document["taxonomy"] = version.document.taxonomy.model_dump(mode="json")
        document["retired"] = version.document.retired.model_dump(mode="json")
        document["changes"] = [c.model_dump(mode="json") for c in version.changes]
        try:
            await self._versions.insert_one(document)
        except DuplicateKeyError:
            raise VersionConflict(await self.newest(version.province_code)) from None


def _aware(document: dict[str, Any]) -> dict[str, Any]:
    at = document.get("at")
    if isinstance(at, datetime) and at.tzinfo is None:
        document["at"] = at.replace(tzinfo=UTC)
    return document


def _version(document: dict[str, Any]) -> TaxonomyVersion:
    document = _aware(document)
    document["document"] = {
        "taxonomy": document.pop("taxonomy"),
        "retired": document.pop("retired", None) or {},
    }
    return TaxonomyVersion.model_validate(document)


def first_version(
    taxonomy: Taxonomy,
    *,
    author: str,
    author_role: str,
    action: str,
    summary_line: str,
    at: datetime,
) -> TaxonomyVersion:
    """Version 1 of a province the store does not hold yet."""
    document = TaxonomyDocument(taxonomy=taxonomy, retired=Retired())
    return TaxonomyVersion(
        province_code=taxonomy.province_code,
        version=1,
        author=author,
        author_role=author_role,
        at=at,
        action=action,
        summary=summary_line,
        changes=diff(None, document),
        document=document,
    )


# --- The live taxonomies of one routing process ----------------------------------------------


class _TaxonomyTopic(CompactedView[TaxonomyPublished]):
    """`acikkapi.taxonomy` read whole, with a signal for each announcement that arrives."""

    def __init__(self, kafka: dict[str, Any]) -> None:
        super().__init__(
            kafka, topics.TAXONOMY, TaxonomyPublished, client_id=f"acikkapi-{SERVICE}-taxonomy"
        )
        self.arrived = asyncio.Event()

    def _apply(self, latest: dict[str, TaxonomyPublished], key: bytes | None, value: Any) -> None:
        super()._apply(latest, key, value)
        self.arrived.set()


@dataclass(frozen=True)
class Held:
    """The version of a province this process decides with, and its announcement."""

    version: int
    document: TaxonomyDocument
    event: TaxonomyPublished


# Makes the Kafka topics of institutions a new version added (their routed queues).
NewInstitutions = Callable[[list[str]], Coroutine[Any, Any, None]]


class LiveTaxonomies:
    """Keeps `registry` (what routing decides with) at the store's newest versions, and the
    topic `acikkapi.taxonomy` announcing them."""

    POLL_SECONDS = 30.0
    GRACE_SECONDS = 2.0
    MAX_BACKOFF_SECONDS = 60.0

    def __init__(
        self,
        store: TaxonomyVersions,
        registry: TaxonomyRegistry,
        publisher: EventPublisher,
        settings: Settings,
        *,
        seeds: Iterable[Taxonomy] = (),
        new_institutions: NewInstitutions | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self._publisher = publisher
        self._seeds = list(seeds)
        self._new_institutions = new_institutions
        self.topic = _TaxonomyTopic(kafka_auth.client_options(settings, SERVICE))
        self.held: dict[int, Held] = {}
        self._behind_since: dict[int, float] = {}  # topic behind the store, since (monotonic)
        self._backoff: dict[int, tuple[float, float]] = {}  # next allowed, current back-off
        self._announced_at_start = False
        self._loaded = False
        self._background: set[asyncio.Task[None]] = set()

    # Start-up ---------------------------------------------------------------------------------

    async def load(self) -> None:
        """Seed the provinces the store has never held, then take the newest versions. Runs
        before the consumers start, so no application is routed with an older taxonomy."""
        heads = await self.store.heads()
        now = datetime.now(UTC)
        for seed in self._seeds:
            if seed.province_code in heads:
                continue
            headings = len(seed.headings)
            categories = sum(len(h.categories) for h in seed.headings)
            version = first_version(
                seed,
                author=SEED_AUTHOR,
                author_role="system",
                action="seed",
                summary_line=(
                    f"Varsayılan görev dağılımı dosyasından ilk yükleme: {headings} başlık, "
                    f"{categories} kategori, {len(seed.institutions)} kurum."
                ),
                at=now,
            )
            with contextlib.suppress(VersionConflict):  # another process seeded it first
                await self.store.append(version)
        await self.sync()
        self._loaded = True  # from now on a new institution needs its topic made

    # Following --------------------------------------------------------------------------------

    async def run(self) -> None:
        """The background loop: follow the topic, take new versions, keep the topic current."""
        follower = asyncio.create_task(self.topic.follow(), name="taxonomy-topic")
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_wake()):
                        await self.topic.arrived.wait()
                self.topic.arrived.clear()
                try:
                    await self.sync(self._known())
                    await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store or Kafka away: try again on the next wake
                    log.warning("taxonomy sync failed", extra={"error": type(exc).__name__})
                    await asyncio.sleep(1.0)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower

    def _known(self) -> set[int]:
        """The provinces held here or announced on the topic (a province loaded through
        another process is announced there)."""
        announced = {int(k) for k in self.topic.latest if k.isdigit()}
        return set(self.held) | announced

    def _next_wake(self) -> float:
        if self._behind_since or not self._announced_at_start:
            return 0.5
        return self.POLL_SECONDS

    async def sync(self, provinces: Iterable[int] | None = None) -> list[int]:
        """Take the newest version of `provinces` (None: of every province the store holds)
        from the store; returns the provinces that changed."""
        if provinces is None:
            newest = await self.store.heads()
        else:
            lines = [await self.store.newest(p) for p in provinces]
            newest = {line.province_code: line.version for line in lines if line is not None}
        changed = []
        for province, number in newest.items():
            held = self.held.get(province)
            if held is not None and held.version >= number:
                continue
            document = await self.store.document(province, number)
            if document is not None and self.install(province, number, document):
                changed.append(province)
        return changed

    def install(self, province: int, number: int, document: TaxonomyDocument) -> bool:
        """Decide with version `number` from now on, if it is newer than the one held."""
        held = self.held.get(province)
        if held is not None and held.version >= number:
            return False
        taxonomy = document.taxonomy
        before = {i.code for i in held.document.taxonomy.institutions} if held else set()
        self.registry.replace(taxonomy)
        self.held[province] = Held(number, document, taxonomy_published(taxonomy, number))
        added = sorted({i.code for i in taxonomy.institutions} - before)
        if self._loaded and added and self._new_institutions is not None:
            task = asyncio.create_task(self._new_institutions(added))
            self._background.add(task)  # kept until done: the loop holds tasks only weakly
            task.add_done_callback(self._background.discard)
        log.info(
            "taxonomy version taken",
            extra={"province_code": province, "version": number},
        )
        return True

    # Announcing -------------------------------------------------------------------------------

    async def announce(self, provinces: Iterable[int]) -> None:
        """Publish the held version of these provinces on `acikkapi.taxonomy`."""
        events = [self.held[p].event for p in provinces if p in self.held]
        await self._publisher.send_all(
            Outgoing.of(topics.TAXONOMY, e, str(e.province_code)) for e in events
        )

    async def reconcile(self, now: float | None = None) -> list[int]:
        """Announce again what the topic lacks: a version newer than its last announcement.
        Returns the provinces announced."""
        if not self.topic.caught_up.is_set():
            return []
        now = time.monotonic() if now is None else now
        due = []
        for province, held in self.held.items():
            seen = self.topic.latest.get(str(province))
            if seen is not None and seen.event_id == held.event.event_id:
                self._behind_since.pop(province, None)
                self._backoff.pop(province, None)
                continue
            since = self._behind_since.setdefault(province, now)
            allowed, _ = self._backoff.get(province, (0.0, 0.0))
            # At start, or for a province the topic has never heard of, at once; otherwise
            # give the process that made the version time to announce it itself.
            at_once = not self._announced_at_start or seen is None
            if now >= allowed and (at_once or now - since >= self.GRACE_SECONDS):
                due.append(province)
        if due:
            await self.announce(due)
        self._announced_at_start = True
        if not due:
            return []
        for province in due:
            # Two deployments that disagree on one topic must not outshout each other in a loop.
            _, backoff = self._backoff.get(province, (0.0, self.GRACE_SECONDS / 2))
            backoff = min(backoff * 2, self.MAX_BACKOFF_SECONDS)
            self._backoff[province] = (now + backoff, backoff)
        log.info("taxonomies announced", extra={"provinces": due})
        return due

    # A new version made here ------------------------------------------------------------------

    async def adopt(self, version: TaxonomyVersion) -> bool:
        """A version this process just stored: decide with it and announce it. False when the
        announcement failed (reconcile repeats it once Kafka answers)."""
        self.install(version.province_code, version.version, version.document)
        try:
            await self.announce([version.province_code])
        except Exception as exc:
            log.warning(
                "taxonomy version stored, announcement left to the reconciler",
                extra={"province_code": version.province_code, "error": type(exc).__name__},
            )
            return False
        return True

    def document(self, province_code: int, version: int) -> TaxonomyDocument | None:
        """The document of `version`, if that is the one this process decides with."""
        held = self.held.get(province_code)
        return held.document if held is not None and held.version == version else None

    def version(self, province_code: int) -> int | None:
        held = self.held.get(province_code)
        return None if held is None else held.version
