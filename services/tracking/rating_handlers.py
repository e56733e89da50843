"""The citizen rates an answer: open the signed link, see what is rated, give 1 to 5 once.

The rating is stored with its announcement in one insert (rating_store.py), then delivered; if
Kafka is away at that moment the rating still counts and the outbox's relay announces it later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter

from services.common.application_number import normalize
from services.tracking import rating
from services.tracking.domain import Application
from services.tracking.rating import AlreadyRated, InvalidToken, RatingKey
from services.tracking.rating_store import RatingStore, StoredRating

log = logging.getLogger("acikkapi.tracking.rating")

RATINGS = Counter("acikkapi_ratings_total", "Answers rated by citizens, by rating", ["rating"])
REFUSED_LINKS = Counter(
    "acikkapi_rating_links_refused_total", "Rating links that were malformed, altered or unknown"
)


class Applications(Protocol):
    """What rating needs of tracking's records (`ApplicationStore`)."""

    async def by_number(self, number_key: str) -> Application | None: ...


@dataclass(frozen=True)
class RatingView:
    """An application as its rating link opens it, and its rating if it has one."""

    application: Application
    rated: StoredRating | None

    @property
    def rateable(self) -> bool:
        try:
            rating.check_rateable(self.application)
        except rating.NotRateable:
            return False
        return True


class Ratings:
    def __init__(self, applications: Applications, store: RatingStore, key: RatingKey) -> None:
        self.applications = applications
        self.store = store
        self.key = key

    async def open(self, token: str) -> RatingView:
        """The application a link is for; InvalidToken for a link tracking never made (or one
        for an application it does not hold), without saying which."""
        try:
            number = rating.verify(self.key, token)
        except InvalidToken:
            REFUSED_LINKS.inc()
            raise
        app = await self.applications.by_number(normalize(number))
        if app is None:
            REFUSED_LINKS.inc()
            raise InvalidToken
        return RatingView(app, await self.store.get(app.application_id))

    async def rate(
        self, token: str, value: str | int | None, comment: str | None, now: datetime
    ) -> StoredRating:
        """Record the rating once; AlreadyRated for a second one, NotRateable before the answer,
        InvalidRating for a value outside 1..5 or too long a comment."""
        view = await self.open(token)
        app = view.application
        if view.rated is not None:
            raise AlreadyRated(app.application_id)
        rating.check_rateable(app)
        score, text = rating.check_rating(value, comment)
        event = rating.rated_event(app, score, now)
        pending = await self.store.add(event, text)
        RATINGS.labels(str(score)).inc()
        try:
            await self.store.outbox.deliver([pending])
        except Exception as exc:  # stored: the relay announces it once Kafka answers again
            log.warning(
                "rating stored, announcement left to the outbox relay",
                extra={"application_id": app.application_id, "error": type(exc).__name__},
            )
        return StoredRating(app.application_id, score, now)
