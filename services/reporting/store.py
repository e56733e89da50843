"""Reporting's own MongoDB collections, no personal data in any: one small document per
application (`reporting_applications`), the folded cells (`reporting_cells`), the overdue lines
(`reporting_overdue`), the days and month cells still to fold (`reporting_dirty_*`), and the
folding lease (`reporting_meta`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.common.events import Status
from services.common.mongo import Database
from services.reporting.cells import Cell, OverdueEntry, Scope, month_days, periods_between
from services.reporting.domain import Patch, status_field

# Only what the fold reads travels back from the database.
_PROJECTION: dict[str, int] = {
    name: 1
    for name in (
        "province_code",
        "district",
        "channel",
        "application_type",
        "received_ms",
        "requested_category_code",
        "routings",
        "outcome",
        "answered_ms",
        "deadline_ms",
        "overdue",
        "rating",
        "application_number",
        *(status_field(s) for s in Status),
    )
}
FOLD_LEASE = "fold"


def day_key(province_code: int, day: str) -> str:
    return f"{province_code:02d}|{day}"


class ReadModel:
    def __init__(self, db: Database) -> None:
        self.applications = db["reporting_applications"]
        self.cells = db["reporting_cells"]
        self.overdue = db["reporting_overdue"]
        self.dirty_days = db["reporting_dirty_days"]
        self.dirty_months = db["reporting_dirty_months"]
        self.meta = db["reporting_meta"]

    @property
    def collections(self) -> tuple[Any, ...]:
        return (
            self.applications,
            self.cells,
            self.overdue,
            self.dirty_days,
            self.dirty_months,
            self.meta,
        )

    async def ensure_indexes(self) -> None:
        await self.applications.create_index(
            [("province_code", ASCENDING), ("received_day", ASCENDING)], name="province_day"
        )
        # Every cell of one province and day (or month), whatever its scope: what a fold replaces.
        await self.cells.create_index(
            [("province_code", ASCENDING), ("grain", ASCENDING), ("period", ASCENDING)],
            name="province_grain_period",
        )
        # One scope's cells over a range of days or months: what a report and a month fold read.
        # (A range of `_id` strings would do in MongoDB; nx-27017 scans for one.)
        await self.cells.create_index(
            [
                ("province_code", ASCENDING),
                ("district", ASCENDING),
                ("institution", ASCENDING),
                ("grain", ASCENDING),
                ("period", ASCENDING),
            ],
            name="scope_grain_period",
        )
        await self.overdue.create_index(
            [("province_code", ASCENDING), ("deadline_ms", ASCENDING)], name="province_deadline"
        )
        await self.overdue.create_index(
            [("province_code", ASCENDING), ("day", ASCENDING)], name="province_day"
        )
        await self.dirty_days.create_index([("at", ASCENDING)], name="at")

    async def drop(self) -> None:
        """Forget everything (a rebuild starts here)."""
        for collection in self.collections:
            await collection.drop()
        await self.ensure_indexes()

    # --- applications -------------------------------------------------------------------------

    async def apply(self, patches: Sequence[tuple[str, Patch]]) -> None:
        """One bulk write of upserts for a batch, no read: the operators make the order of
        events irrelevant."""
        ops = []
        for application_id, patch in patches:
            update: dict[str, Any] = {}
            if patch.assign:
                update["$set"] = patch.assign
            if patch.at_least:
                update["$max"] = patch.at_least
            if patch.at_most:
                update["$min"] = patch.at_most
            if update:
                ops.append(UpdateOne({"_id": application_id}, update, upsert=True))
        if ops:
            await self.applications.bulk_write(ops, ordered=False)

    async def receipt_days(self, application_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """The province and day of receipt of those applications whose receipt is known."""
        ids = list(set(application_ids))
        found: dict[str, tuple[int, str]] = {}
        if not ids:
            return found
        cursor = self.applications.find(
            {"_id": {"$in": ids}}, {"province_code": 1, "received_day": 1}
        )
        async for doc in cursor:
            if doc.get("province_code") is not None and doc.get("received_day"):
                found[doc["_id"]] = (int(doc["province_code"]), str(doc["received_day"]))
        return found

    async def day_documents(self, province_code: int, day: str) -> AsyncIterator[dict[str, Any]]:
        cursor = self.applications.find(
            {"province_code": province_code, "received_day": day}, _PROJECTION, batch_size=2000
        )
        async for doc in cursor:
            yield doc

    async def count_applications(self) -> int:
        return await self.applications.count_documents({"received_day": {"$exists": True}})

    # --- what is left to fold -----------------------------------------------------------------

    async def mark_days(self, days: Iterable[tuple[int, str]]) -> None:
        """These days of receipt changed: fold them again. A generation counter tells a fold
        whether the day changed once more while it worked."""
        now = datetime.now(UTC).timestamp()
        days_list = sorted(set(days))
        ops = [
            UpdateOne(
                {"_id": day_key(province, day)},
                {
                    "$inc": {"gen": 1},
                    "$set": {"province_code": province, "day": day, "at": now},
                },
                upsert=True,
            )
            for province, day in days_list
        ]
        if ops:
            await self.dirty_days.bulk_write(ops, ordered=False)
            numbers = [int(day.replace("-", "")) for _, day in days_list]
            await self.meta.update_one(
                {"_id": "span"},
                {"$min": {"first": min(numbers)}, "$max": {"last": max(numbers)}},
                upsert=True,
            )

    async def span(self) -> tuple[str, str] | None:
        """The first and last day of receipt of any application (as numbers: nx-27017 compares
        text under `$min` and `$max` as it likes)."""
        doc = await self.meta.find_one({"_id": "span"})
        if not doc:
            return None
        first, last = str(doc["first"]), str(doc["last"])
        return (f"{first[:4]}-{first[4:6]}-{first[6:]}", f"{last[:4]}-{last[4:6]}-{last[6:]}")

    async def dirty_day_batch(self, limit: int) -> list[dict[str, Any]]:
        # Longest waiting first: a day marked again and again cannot hold the others back.
        cursor = (
            self.dirty_days.find({}, {"province_code": 1, "day": 1, "gen": 1})
            .sort("at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def clear_day(self, marker: Mapping[str, Any]) -> None:
        """Done with the day, unless it changed again meanwhile (then it stays to fold)."""
        await self.dirty_days.delete_one({"_id": marker["_id"], "gen": marker["gen"]})

    async def mark_months(self, scopes: Iterable[tuple[Scope, str]]) -> None:
        ops = [
            UpdateOne(
                {"_id": scope.cell_id("month", month)},
                {
                    "$set": {
                        "province_code": scope.province_code,
                        "district": scope.district,
                        "institution": scope.institution,
                        "month": month,
                    }
                },
                upsert=True,
            )
            for scope, month in scopes
        ]
        if ops:
            await self.dirty_months.bulk_write(ops, ordered=False)

    async def dirty_month_batch(self, limit: int) -> list[dict[str, Any]]:
        return [doc async for doc in self.dirty_months.find({}).limit(limit)]

    async def clear_months(self, ids: Sequence[str]) -> None:
        if ids:
            await self.dirty_months.delete_many({"_id": {"$in": list(ids)}})

    async def backlog(self) -> tuple[int, int]:
        return (
            await self.dirty_days.count_documents({}),
            await self.dirty_months.count_documents({}),
        )

    # --- cells --------------------------------------------------------------------------------

    async def day_cells(self, province_code: int, day: str) -> dict[str, dict[str, Any]]:
        cursor = self.cells.find({"province_code": province_code, "grain": "day", "period": day})
        return {doc["_id"]: doc async for doc in cursor}

    @staticmethod
    def changed_scopes(
        grain: str,
        period: str,
        province_code: int,
        cells: Mapping[Scope, Cell],
        existing: Mapping[str, Mapping[str, Any]],
    ) -> set[Scope]:
        """The scopes whose cell differs from the stored one, new ones and gone ones included."""
        changed = set()
        for scope, cell in cells.items():
            old = existing.get(scope.cell_id(grain, period))
            body = cell.to_document()
            if old is None or any(old.get(k) != v for k, v in body.items()):
                changed.add(scope)
        fresh_ids = {scope.cell_id(grain, period) for scope in cells}
        for cell_id, old in existing.items():
            if cell_id not in fresh_ids:
                changed.add(Scope(province_code, old["district"], old["institution"]))
        return changed

    async def write_cells(
        self,
        grain: str,
        period: str,
        province_code: int,
        cells: Mapping[Scope, Cell],
        changed: set[Scope],
    ) -> None:
        """Store the changed cells of one province and period; a changed scope with no cell any
        more (its last application moved elsewhere) is deleted."""
        ops: list[Any] = []
        for scope in changed:
            cell_id = scope.cell_id(grain, period)
            cell = cells.get(scope)
            if cell is None:
                ops.append(DeleteOne({"_id": cell_id}))
                continue
            ops.append(
                ReplaceOne(
                    {"_id": cell_id},
                    {
                        "_id": cell_id,  # nx-27017 takes an upsert's _id from the document only
                        **cell.to_document(),
                        "grain": grain,
                        "period": period,
                        "province_code": province_code,
                        "district": scope.district,
                        "institution": scope.institution,
                    },
                    upsert=True,
                )
            )
        if ops:
            await self.cells.bulk_write(ops, ordered=False)

    async def cells_between(self, scope: Scope, grain: str, first: str, last: str) -> list[Cell]:
        """The cells of one scope from one period to another, inclusive, read by their ids."""
        ids = [scope.cell_id(grain, p) for p in periods_between(grain, first, last)]
        cursor = self.cells.find({"_id": {"$in": ids}}, {"rows": 1, "names": 1, "series": 1})
        return [Cell.from_document(doc) async for doc in cursor]

    async def day_cells_of_month(self, province_code: int, month: str) -> dict[Scope, list[Cell]]:
        """Every day cell of a province's month, by scope: one indexed read where many scopes'
        months are to be summed at once (a rebuild), instead of one read per scope."""
        first, last = month_days(month)
        cursor = self.cells.find(
            {
                "province_code": province_code,
                "grain": "day",
                "period": {"$gte": first.isoformat(), "$lte": last.isoformat()},
            }
        )
        cells: dict[Scope, list[Cell]] = {}
        async for doc in cursor:
            scope = Scope(province_code, doc["district"], doc["institution"])
            cells.setdefault(scope, []).append(Cell.from_document(doc))
        return cells

    async def month_cell(self, scope: Scope, month: str) -> dict[str, Any] | None:
        return await self.cells.find_one({"_id": scope.cell_id("month", month)})

    async def replace_month(self, scope: Scope, month: str, cell: Cell) -> None:
        cell_id = scope.cell_id("month", month)
        if not cell.total:
            await self.cells.delete_one({"_id": cell_id})
            return
        await self.cells.replace_one(
            {"_id": cell_id},
            {
                "_id": cell_id,
                **cell.to_document(),
                "grain": "month",
                "period": month,
                "province_code": scope.province_code,
                "district": scope.district,
                "institution": scope.institution,
            },
            upsert=True,
        )

    async def scope_cells(
        self, grain: str, province_code: int | None = None
    ) -> list[dict[str, Any]]:
        """Every cell of a grain with its scope (the institution gauges read the month cells of
        the institution scopes)."""
        query: dict[str, Any] = {"grain": grain, "district": "*"}
        if province_code is not None:
            query["province_code"] = province_code
        fields = {"province_code": 1, "institution": 1, "all": 1}
        return [doc async for doc in self.cells.find(query, fields)]

    # --- the overdue list ---------------------------------------------------------------------

    async def replace_overdue(
        self, province_code: int, day: str, entries: Sequence[OverdueEntry]
    ) -> None:
        current = {
            doc["_id"]
            async for doc in self.overdue.find(
                {"province_code": province_code, "day": day}, {"_id": 1}
            )
        }
        keep = {e.application_id for e in entries}
        ops: list[Any] = [DeleteOne({"_id": gone}) for gone in current - keep]
        ops += [
            ReplaceOne(
                {"_id": e.application_id},
                {
                    "_id": e.application_id,
                    "province_code": province_code,
                    "day": day,
                    "application_number": e.application_number,
                    "district": e.district,
                    "institution_code": e.institution_code,
                    "institution_name": e.institution_name,
                    "category_name": e.category_name,
                    "received_ms": e.received_ms,
                    "deadline_ms": e.deadline_ms,
                },
                upsert=True,
            )
            for e in entries
        ]
        if ops:
            await self.overdue.bulk_write(ops, ordered=False)

    async def overdue_lines(
        self, scope: Scope, first_day: str | None, last_day: str | None, limit: int
    ) -> list[OverdueEntry]:
        query: dict[str, Any] = {"province_code": scope.province_code}
        if scope.district != "*":
            query["district"] = scope.district
        if scope.institution != "*":
            query["institution_code"] = scope.institution
        day: dict[str, str] = {}
        if first_day:
            day["$gte"] = first_day
        if last_day:
            day["$lte"] = last_day
        if day:
            query["day"] = day
        # No count here: nx-27017 counts by reading every line (0.5 s at 40,000); the cells
        # know how many are open and overdue.
        cursor = self.overdue.find(query).sort("deadline_ms", ASCENDING).limit(limit)
        lines = [
            OverdueEntry(
                application_id=doc["_id"],
                application_number=doc.get("application_number"),
                district=doc.get("district"),
                institution_code=doc.get("institution_code"),
                institution_name=doc.get("institution_name"),
                category_name=doc.get("category_name"),
                received_ms=doc.get("received_ms"),
                deadline_ms=doc.get("deadline_ms"),
            )
            async for doc in cursor
        ]
        return lines

    # --- the folding lease and its clock ------------------------------------------------------

    async def hold_lease(self, owner: str, now: float, seconds: float) -> bool:
        """Whether this process folds now: it holds the lease, or took it because it ended."""
        until = now + seconds
        try:
            await self.meta.insert_one({"_id": FOLD_LEASE, "owner": owner, "until": until})
            return True
        except DuplicateKeyError:
            pass
        mine = await self.meta.update_one(
            {"_id": FOLD_LEASE, "owner": owner}, {"$set": {"until": until}}
        )
        if mine.matched_count:
            return True
        taken = await self.meta.update_one(
            {"_id": FOLD_LEASE, "until": {"$lt": now}}, {"$set": {"owner": owner, "until": until}}
        )
        return bool(taken.matched_count)

    async def release_lease(self, owner: str) -> None:
        await self.meta.delete_one({"_id": FOLD_LEASE, "owner": owner})

    async def set_folded(self, at: datetime) -> None:
        await self.meta.update_one({"_id": "folded"}, {"$set": {"at": at.timestamp()}}, upsert=True)

    async def folded_at(self) -> datetime | None:
        doc = await self.meta.find_one({"_id": "folded"})
        return datetime.fromtimestamp(doc["at"], UTC) if doc and doc.get("at") else None
