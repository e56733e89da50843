"""The rating link and the rating rules, without I/O: the token round-trips, refuses any change,
fits an SMS, and the use case takes one rating per answered application, with fakes at the
store's edge."""

from __future__ import annotations

import string
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from services.common.application_number import format_number, normalize
from services.common.events import NotificationChannel, Outcome, Status
from services.common.outbox import Pending
from services.common.settings import Settings
from services.notification.rendering import Renderer
from services.tracking import domain, rating
from services.tracking.rating import (
    ALPHABET,
    TOKEN_LENGTH,
    AlreadyRated,
    InvalidRating,
    InvalidToken,
    NotRateable,
    RatingKey,
)
from services.tracking.rating_handlers import Ratings
from services.tracking.rating_store import StoredRating

KEY = RatingKey("test-secret")
NUMBER = format_number(20, 2026, 123)  # 20-2026-0000123-x
T0 = datetime(2026, 3, 16, 9, 30, tzinfo=UTC)


# --- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("province", "year", "sequence"),
    [(20, 2026, 123), (1, 2000, 1), (81, 2127, 9_999_999), (34, 2031, 4_567_890)],
)
def test_a_token_gives_back_the_number_it_was_made_for(province, year, sequence):
    number = format_number(province, year, sequence)
    token = rating.sign(KEY, number)
    assert rating.verify(KEY, token) == number
    # Separators are the citizen's business: the same number signs the same token.
    assert rating.sign(KEY, normalize(number)) == token


def test_a_token_is_sixteen_url_safe_characters_without_look_alikes():
    tokens = [rating.sign(KEY, format_number(20, 2026, n)) for n in range(1, 500)]
    assert all(len(t) == TOKEN_LENGTH == 16 for t in tokens)
    used = set("".join(tokens))
    assert used <= set(string.ascii_lowercase + string.digits)
    assert not used & set("ilou")  # nothing to confuse with 1, 0 or v
    assert len(set(tokens)) == len(tokens)


def test_a_token_does_not_show_the_number():
    one, two = (rating.sign(KEY, format_number(20, 2026, n)) for n in (123, 124))
    # Neighbouring numbers share no visible structure: the number is masked by the tag's pad.
    assert sum(a != b for a, b in zip(one, two, strict=True)) >= 10
    assert "123" not in one and "2026" not in one


def test_every_changed_character_is_refused():
    token = rating.sign(KEY, NUMBER)
    for position in range(len(token)):
        for char in ALPHABET:
            if char == token[position]:
                continue
            altered = token[:position] + char + token[position + 1 :]
            with pytest.raises(InvalidToken):
                rating.verify(KEY, altered)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "0" * 15,
        "0" * 17,
        "0" * 16,
        "ehyhfac9z3n0mw9!",
        "ehyhfac9z3n0mw9ş",
        "../../takip",
    ],
)
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(InvalidToken):
        rating.verify(KEY, bad)


def test_a_token_of_another_key_is_refused():
    token = rating.sign(RatingKey("another-secret"), NUMBER)
    with pytest.raises(InvalidToken):
        rating.verify(KEY, token)


def test_a_token_typed_in_capitals_or_with_misread_letters_still_opens():
    token = rating.sign(KEY, NUMBER)
    assert rating.verify(KEY, token.upper()) == NUMBER
    misread = token.replace("0", "o").replace("1", "l")
    assert rating.verify(KEY, misread) == NUMBER


def test_the_link_sits_beside_the_status_page():
    token = rating.sign(KEY, NUMBER)
    url = rating.rating_url(KEY, "https://acikkapi.denizli.gov.tr/takip", NUMBER)
    assert url == f"https://acikkapi.denizli.gov.tr/p/{token}"
    assert (
        rating.link_base("https://kapi.example/acikkapi/takip/") == "https://kapi.example/acikkapi"
    )
    assert rating.link_base("http://127.0.0.1:8003/takip") == "http://127.0.0.1:8003"
    assert rating.link_base("https://kapi.example") == "https://kapi.example"
    # A part of a split application gets no SMS and no link.
    assert rating.rating_url(KEY, "https://kapi.example/takip", f"{NUMBER}/2") is None


def test_the_key_comes_from_the_service_secret():
    settings = Settings(jwt_secret="s1", public_tracking_url="https://kapi.example/takip")
    link = rating.sms_link(settings, NUMBER)
    assert link is not None
    token = link.rsplit("/", 1)[1]
    assert rating.verify(RatingKey("s1"), token) == NUMBER
    with pytest.raises(InvalidToken):
        rating.verify(RatingKey("s2"), token)


def test_the_number_is_shown_partly_hidden():
    assert rating.masked_number(NUMBER) == f"20-2026-••••123-{NUMBER[-1]}"


# --- the answer SMS ----------------------------------------------------------------------------


def answered_app(status: Status = Status.answered, **changes) -> domain.Application:
    values = {
        "application_id": "app-7",
        "application_number": NUMBER,
        "status": status,
        "province_code": 20,
        "category_code": "ALT-001",
        "institution_code": "DESKI",
        "institution_name": "Denizli Su ve Kanalizasyon İdaresi",
        "outcome": Outcome.kismen_olumlu if status in rating.RATEABLE else None,
        "answered_at": T0 if status in rating.RATEABLE else None,
    }
    return domain.Application(**(values | changes))


def test_the_answer_sms_carries_the_rating_link_and_stays_two_segments():
    tracking = "https://acikkapi.denizli.gov.tr/takip"
    link = rating.rating_url(KEY, tracking, NUMBER)
    sms = domain.answer_sms(answered_app(), "+905321234567", tracking, link)
    assert sms.params["rating_url"] == link
    text = Renderer().render(sms.template, NotificationChannel.sms, sms.params).text
    assert text.endswith(f"Yanıtı puanlayın (1-5): {link}")
    assert "Yanıt: https://acikkapi.denizli.gov.tr/takip" in text
    # With the Turkish GSM shift table each of these letters costs two septets; two parts of a
    # concatenated SMS with that table hold 2 × 149.
    septets = len(text) + sum(text.count(c) for c in "çşğıİŞĞÇ")
    assert septets <= 2 * 149, (septets, text)


def test_an_answer_sms_without_a_link_reads_as_before():
    sms = domain.answer_sms(answered_app(), "+905321234567", "https://kapi.example/takip")
    assert "rating_url" not in sms.params
    text = Renderer().render(sms.template, NotificationChannel.sms, sms.params).text
    assert "puan" not in text and text.endswith("Yanıt: https://kapi.example/takip")


# --- the use case ------------------------------------------------------------------------------


class FakeOutbox:
    def __init__(self) -> None:
        self.delivered: list[Pending] = []
        self.fail = False

    async def deliver(
        self, pending: Iterable[Pending | None], *, clear_later: bool = False
    ) -> None:
        if self.fail:
            raise ConnectionError("Kafka is away")
        self.delivered.extend(p for p in pending if p is not None)


class FakeRatings:
    """Same contract as MongoRatings: one rating per application id."""

    def __init__(self) -> None:
        self.outbox = FakeOutbox()
        self.stored: dict[str, tuple[StoredRating, str | None]] = {}
        self.events: list[object] = []

    async def get(self, application_id: str) -> StoredRating | None:
        found = self.stored.get(application_id)
        return found[0] if found else None

    async def add(self, event, comment: str | None) -> Pending | None:
        if event.application_id in self.stored:
            raise AlreadyRated(event.application_id)
        self.stored[event.application_id] = (
            StoredRating(event.application_id, event.rating, event.rated_at),
            comment,
        )
        self.events.append(event)
        return Pending(event.application_id, "t", ())


class FakeApplications:
    def __init__(self, *apps: domain.Application) -> None:
        self.apps = {normalize(a.application_number): a for a in apps}

    async def by_number(self, number_key: str) -> domain.Application | None:
        return self.apps.get(number_key)


def world(*apps: domain.Application) -> tuple[Ratings, FakeRatings]:
    store = FakeRatings()
    return Ratings(FakeApplications(*apps), store, KEY), store


TOKEN = rating.sign(KEY, NUMBER)


async def test_an_answered_application_is_rated_once_and_announced():
    ratings, store = world(answered_app())
    view = await ratings.open(TOKEN)
    assert view.rateable and view.rated is None
    saved = await ratings.rate(TOKEN, "4", "  Hızlı cevap için teşekkürler.  ", T0)
    assert saved.rating == 4
    (event,) = store.events
    assert event.rating == 4 and event.application_number == NUMBER
    assert (event.institution_code, event.category_code, event.province_code) == (
        "DESKI",
        "ALT-001",
        20,
    )
    assert event.rated_at == T0
    # Deterministic: the relay's second publication would carry the same id.
    assert event.event_id == rating.rated_event(answered_app(), 4, T0).event_id
    assert store.stored["app-7"][1] == "Hızlı cevap için teşekkürler."
    assert len(store.outbox.delivered) == 1
    with pytest.raises(AlreadyRated):
        await ratings.rate(TOKEN, "5", None, T0)
    assert (await ratings.open(TOKEN)).rated == saved


async def test_a_closed_application_can_be_rated_too():
    ratings, store = world(answered_app(Status.closed))
    await ratings.rate(TOKEN, 1, None, T0)
    assert store.stored["app-7"][0].rating == 1


@pytest.mark.parametrize("status", [Status.received, Status.routed, Status.opened])
async def test_an_unanswered_application_cannot_be_rated(status):
    ratings, store = world(answered_app(status))
    assert not (await ratings.open(TOKEN)).rateable
    with pytest.raises(NotRateable):
        await ratings.rate(TOKEN, "3", None, T0)
    assert not store.stored


@pytest.mark.parametrize("value", [None, "", "0", "6", "3.5", "beş", "-1"])
async def test_only_one_to_five_is_a_rating(value):
    ratings, store = world(answered_app())
    with pytest.raises(InvalidRating) as info:
        await ratings.rate(TOKEN, value, None, T0)
    assert info.value.field == "rating"
    assert info.value.message == "Lütfen 1 ile 5 arasında bir puan seçin."
    assert not store.stored


async def test_a_comment_longer_than_500_characters_is_refused():
    ratings, store = world(answered_app())
    with pytest.raises(InvalidRating) as info:
        await ratings.rate(TOKEN, "2", "ş" * 501, T0)
    assert info.value.field == "comment" and "500" in info.value.message
    await ratings.rate(TOKEN, "2", "ş" * 500, T0)
    assert store.stored["app-7"][1] == "ş" * 500


async def test_a_link_for_an_unknown_application_is_just_invalid():
    ratings, _ = world(answered_app())
    other = rating.sign(KEY, format_number(20, 2026, 999))
    with pytest.raises(InvalidToken):
        await ratings.open(other)
    with pytest.raises(InvalidToken):
        await ratings.rate(TOKEN[:-1] + ("a" if TOKEN[-1] != "a" else "b"), "4", None, T0)


async def test_the_rating_counts_even_when_kafka_is_away():
    ratings, store = world(answered_app())
    store.outbox.fail = True
    saved = await ratings.rate(TOKEN, "5", None, T0)
    assert saved.rating == 5 and "app-7" in store.stored
    assert not store.outbox.delivered  # left in the outbox for the relay
