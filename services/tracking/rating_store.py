"""Tracking's ratings collection: one document per rated application, its `_id` the application
id, so a second rating of the same application cannot be stored, whichever process takes it.

The rating and its announcement (`application.rated` on `acikkapi.ratings`) are one insert: the
event waits in the document's outbox (services/common/outbox.py) until the broker has it, and
the relay of every tracking process publishes what a crash or a Kafka outage left there. The
citizen's comment is personal data: it is stored sealed with the PII key and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from services.common import topics
from services.common.events import ApplicationRated
from services.common.messaging import Outgoing, Publisher
from services.common.mongo import Database
from services.common.outbox import Delivery, Outbox, Pending
from services.common.pii import PiiCipher
from services.tracking.rating import AlreadyRated


@dataclass(frozen=True)
class StoredRating:
    """What is known of an application's rating (the comment stays sealed)."""

    application_id: str
    rating: int
    rated_at: datetime


class RatingStore(Protocol):
    """The ratings as the use case sees them (`MongoRatings`; a fake in unit tests)."""

    @property
    def outbox(self) -> Delivery: ...

    async def get(self, application_id: str) -> StoredRating | None: ...
    async def add(self, event: ApplicationRated, comment: str | None) -> Pending | None: ...


class MongoRatings:
    def __init__(self, db: Database, publisher: Publisher, cipher: PiiCipher) -> None:
        # Prefixed with the service's name, as every collection here (see service_database).
        self.ratings = db["tracking_ratings"]
        self.cipher = cipher
        self.outbox = Outbox(self.ratings, publisher, cipher)

    async def ensure_indexes(self) -> None:
        # The unique key is `_id`, the application id: nothing else to declare.
        await self.outbox.ensure_indexes()

    async def get(self, application_id: str) -> StoredRating | None:
        doc = await self.ratings.find_one({"_id": application_id}, {"rating": 1, "rated_at": 1})
        if doc is None:
            return None
        return StoredRating(doc["_id"], int(doc["rating"]), doc["rated_at"])

    async def add(self, event: ApplicationRated, comment: str | None) -> Pending | None:
        """Store the rating with its announcement in the outbox; AlreadyRated if the
        application has one."""
        message = Outgoing.of(topics.RATINGS, event, event.application_id)
        fields, pending = self.outbox.fields(event.application_id, [message])
        doc: dict[str, Any] = {
            "_id": event.application_id,
            "application_number": event.application_number,
            "rating": event.rating,
            "rated_at": event.rated_at,
            "institution_code": event.institution_code,
            "category_code": event.category_code,
            "province_code": event.province_code,
            "comment_enc": self.cipher.encrypt(comment) if comment else None,
            **fields,
        }
        try:
            await self.ratings.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyRated(event.application_id) from None
        return pending
