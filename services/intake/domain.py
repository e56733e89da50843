"""Intake's rules: what makes an application acceptable, and how application numbers are handed out.

Pydantic checks the shape (types, enums, required fields); the rule functions here check the
content and normalise it, raising `RuleViolation` with a Turkish message. `ApplicationForm`
attaches every rule to its field, so one validation pass yields at most one error per field,
shape and rule errors together. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength
from stdnum.tr import tckimlik

from services.common.events import (
    ApplicantContact,
    ApplicationFacts,
    ApplicationType,
    Channel,
    Location,
    Priority,
)
from services.common.provinces import province_name
from services.common.turkish import turkish_lower, turkish_upper
from services.common.turkish_time import ISTANBUL


class Provinces(Protocol):
    """The provinces intake may register applications for (`messaging.ServedProvinces`: what
    routing announces; a fixed set in unit tests)."""

    def __contains__(self, province_code: object) -> bool: ...

    def districts(self, base: DistrictDirectory) -> DistrictDirectory:
        """`base` with the district lists of the provinces served (their taxonomies')."""
        ...

    def is_known(self) -> bool: ...

    async def known(self) -> None:
        """Returns once the set is known; before that nothing can be judged."""


class RuleViolation(ValueError):
    """A field's content breaks an intake rule; `message` is what the citizen reads."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Every code a rule can raise: the error list keeps these messages as they are.
RULE_CODES = frozenset(
    {
        "invalid_tckn",
        "invalid_name",
        "invalid_initials",
        "invalid_phone",
        "invalid_email",
        "invalid_province",
        "priority_counter_only",
        "invalid_caller_number",
        "caller_number_call_centre_only",
        "province_not_served",
        "unknown_district",
        "invalid_district",
        "invalid_subject",
        "invalid_text",
        "invalid_category_code",
    }
)

# --- Turkish letters -------------------------------------------------------------------------

TURKISH_ALPHABET = "abcçdefgğhıijklmnoöprsştuüvyz"
_ASCII_FOLD = str.maketrans("çğıöşüâîû", "cgiosuaiu")
_SPACES = re.compile(r"\s+")


def _clean(text: str) -> str:
    """NFC (so a decomposed ş equals a composed one), trimmed, inner whitespace collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


# --- Applicant ---------------------------------------------------------------------------------


def check_tckn(value: str) -> str:
    """The TC Kimlik No: 11 digits, not starting with 0, both check digits right."""
    number = value.strip()
    try:
        return str(tckimlik.validate(number))
    except InvalidLength:
        message = "TC Kimlik No 11 haneli olmalıdır."
    except InvalidFormat:
        if number.isdigit():
            message = "TC Kimlik No 0 ile başlayamaz."
        else:
            message = "TC Kimlik No yalnızca rakamlardan oluşmalıdır."
    except InvalidChecksum:
        message = "TC Kimlik No geçersiz: kontrol haneleri tutmuyor."
    raise RuleViolation("invalid_tckn", message)


# Turkish letters plus q, w, x and the circumflexed vowels, which Turkish names do carry
# (Nâzım, Wolfgang); a separator may only stand between letters.
_NAME_LETTERS = "a-zçğıöşüâîûA-ZÇĞİÖŞÜÂÎÛ"
_NAME_RE = re.compile(rf"[{_NAME_LETTERS}]+(?:[ '’\-][{_NAME_LETTERS}]+)*")
NAME_MIN, NAME_MAX = 2, 50


def check_name(value: str, label: str) -> str:
    """A first or last name: letters, single spaces, apostrophes and hyphens, 2..50 characters."""
    name = _clean(value)
    if not NAME_MIN <= len(name) <= NAME_MAX:
        raise RuleViolation(
            "invalid_name", f"{label} {NAME_MIN} ile {NAME_MAX} karakter arasında olmalıdır."
        )
    if not _NAME_RE.fullmatch(name):
        raise RuleViolation(
            "invalid_name",
            f"{label} yalnızca harf, boşluk, kesme işareti ve tire içerebilir.",
        )
    return name


def check_initials(value: str) -> str:
    """Two letters of the Turkish alphabet (first and last of the mother's maiden surname)."""
    letters = re.sub(r"[\s.]", "", unicodedata.normalize("NFC", value))
    if len(letters) != 2 or any(turkish_lower(ch) not in TURKISH_ALPHABET for ch in letters):
        raise RuleViolation(
            "invalid_initials",
            "Anne kızlık soyadının ilk ve son harfi, Türk alfabesinden tam iki harf olmalıdır "
            "(ör. YZ).",
        )
    return turkish_upper(letters)


def check_phone(value: str) -> str:
    """A Turkish mobile number in any common spelling; returned in E.164 (+905321234567)."""
    message = "Telefon numarası geçerli bir Türkiye cep telefonu olmalıdır (ör. 0532 123 45 67)."
    return _turkish_number(value, "invalid_phone", message, mobile=True)


def check_caller_number(value: str) -> str:
    """The number a call came from: any Turkish number, fixed line or mobile, in E.164."""
    message = "Arayan numara geçerli bir Türkiye telefon numarası olmalıdır (ör. 0258 123 45 67)."
    return _turkish_number(value, "invalid_caller_number", message, mobile=False)


def _turkish_number(value: str, code: str, message: str, *, mobile: bool) -> str:
    try:
        number = phonenumbers.parse(value.strip(), "TR")
    except phonenumbers.NumberParseException:
        raise RuleViolation(code, message) from None
    # MOBILE is only reported for a number that matches Turkey's mobile pattern and length,
    # so a separate is_valid_number (which would classify the number a second time) is not needed.
    if mobile:
        valid = phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    else:
        valid = phonenumbers.is_valid_number(number)
    if number.country_code != 90 or not valid:
        raise RuleViolation(code, message)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def check_email(value: str | None) -> str | None:
    """Optional; an empty string counts as absent (web forms send one)."""
    if value is None or not value.strip():
        return None
    email = value.strip()
    local, _, domain = email.rpartition("@")
    if len(email) > 254 or len(local) > 64 or not _EMAIL_RE.fullmatch(email):
        raise RuleViolation("invalid_email", "E-posta adresi geçerli değil (ör. ad@ornek.com).")
    return f"{local}@{domain.lower()}"


# --- Application -------------------------------------------------------------------------------

SUBJECT_MIN, SUBJECT_MAX = 5, 200
TEXT_MIN, TEXT_MAX = 10, 5000
_CATEGORY_RE = re.compile(r"[A-Z]{2,5}-\d{3}")


def check_province(value: int) -> int:
    if not 1 <= value <= 81:
        raise RuleViolation("invalid_province", "İl plaka kodu 1 ile 81 arasında olmalıdır.")
    return value


def check_subject(value: str) -> str:
    subject = value.strip()
    if not SUBJECT_MIN <= len(subject) <= SUBJECT_MAX:
        raise RuleViolation(
            "invalid_subject",
            f"Konu {SUBJECT_MIN} ile {SUBJECT_MAX} karakter arasında olmalıdır.",
        )
    return subject


def check_text(value: str) -> str:
    text = value.strip()
    if not TEXT_MIN <= len(text) <= TEXT_MAX:
        raise RuleViolation(
            "invalid_text",
            f"Başvuru metni {TEXT_MIN} ile {TEXT_MAX} karakter arasında olmalıdır.",
        )
    return text


def check_category_code(value: str | None) -> str | None:
    """Optional; routing decides the category when the channel does not know it."""
    if value is None or not value.strip():
        return None
    code = value.strip().upper()
    if not _CATEGORY_RE.fullmatch(code):
        raise RuleViolation(
            "invalid_category_code", "Kategori kodu ABC-123 biçiminde olmalıdır (ör. YOL-001)."
        )
    return code


@dataclass(frozen=True)
class Province:
    name: str
    # matching key -> official spelling; see DistrictDirectory.canonical
    exact: dict[str, str]
    ascii_folded: dict[str, str]


class DistrictDirectory:
    """The districts of each province, matched the way people type them.

    A name matches after Turkish case-folding ("MERKEZEFENDİ" = "merkezefendi"); failing that,
    after folding Turkish letters to ASCII ("Civril" = "Çivril", "MERKEZEFENDI" typed on an
    English keyboard), when that is unambiguous within the province. The official spelling is
    what gets stored. A province with no list accepts any non-empty name: a documented gap until
    its list is loaded.
    """

    def __init__(self, provinces: Mapping[int, tuple[str, list[str]]]) -> None:
        self._source = dict(provinces)
        self._provinces: dict[int, Province] = {}
        for code, (name, districts) in provinces.items():
            exact = {turkish_lower(_clean(d)): _clean(d) for d in districts}
            folded: dict[str, str] = {}
            clashes: set[str] = set()
            for key, official in exact.items():
                ascii_key = key.translate(_ASCII_FOLD)
                if ascii_key in folded:
                    clashes.add(ascii_key)
                folded[ascii_key] = official
            for key in clashes:
                del folded[key]
            self._provinces[int(code)] = Province(name, exact, folded)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DistrictDirectory:
        """Build from the shape of data/districts.json."""
        provinces = {
            int(code): (str(entry["name"]), [str(d) for d in entry["districts"]])
            for code, entry in document["provinces"].items()
        }
        return cls(provinces)

    def with_provinces(self, provinces: Mapping[int, tuple[str, list[str]]]) -> DistrictDirectory:
        """This directory with these provinces' lists added (or replacing its own)."""
        return DistrictDirectory({**self._source, **provinces})

    def canonical(self, province_code: int, district: str) -> str:
        """The official spelling of `district` in that province, or RuleViolation."""
        name = _clean(district)
        if not name:
            raise RuleViolation("invalid_district", "İlçe adı boş olamaz.")
        if len(name) > 100:
            raise RuleViolation("invalid_district", "İlçe adı en fazla 100 karakter olabilir.")
        province = self._provinces.get(province_code)
        if province is None:
            return name  # no list loaded for this province yet: accepted as written
        key = turkish_lower(name)
        found = province.exact.get(key) or province.ascii_folded.get(key.translate(_ASCII_FOLD))
        if found is None:
            raise RuleViolation(
                "unknown_district", f"{province.name} iline bağlı böyle bir ilçe bulunamadı."
            )
        return found


EMPTY_DIRECTORY = DistrictDirectory({})

# A bound on the form's list of attachment ids; the real limit is the setting
# attachments_per_application, which the claim enforces with its own message.
MAX_ATTACHMENT_IDS = 50


def _rule(check: Any) -> AfterValidator:
    """Run a rule as a pydantic validator, keeping its code and Turkish message."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except RuleViolation as exc:
            raise PydanticCustomError(exc.code, exc.message) from None

    return AfterValidator(run)


def _name_rule(label: str) -> AfterValidator:
    return _rule(lambda value: check_name(value, label))


class ApplicantForm(BaseModel):
    """Who applies. A number sent for the TC Kimlik No or the phone is checked as text."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    tckn: Annotated[str, _rule(check_tckn)]
    first_name: Annotated[str, _name_rule("Ad")]
    last_name: Annotated[str, _name_rule("Soyad")]
    # Not asked of an e-Devlet applicant, whose identity the gateway has already proven.
    mother_maiden_initials: str | None = Field(default=None, validate_default=True)
    phone: Annotated[str, _rule(check_phone)]
    email: Annotated[str | None, _rule(check_email)] = None

    @field_validator("mother_maiden_initials")
    @classmethod
    def _initials(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if (info.context or {}).get("identity_proven"):
                return None
            raise PydanticCustomError("missing", "Field required")
        try:
            return check_initials(value)
        except RuleViolation as exc:
            raise PydanticCustomError(exc.code, exc.message) from None


class ApplicationForm(BaseModel):
    """An application as every channel sends it; a valid instance is already normalised.

    Unknown fields are ignored so that a submission from Kafka (the same body plus its envelope
    and `submission_id`) goes through exactly this validation. Validate with
    `context={"districts": DistrictDirectory}` to check districts.
    """

    model_config = ConfigDict(extra="ignore")

    channel: Channel
    applicant: ApplicantForm
    # province_code comes before district: the district rule reads the validated province.
    province_code: Annotated[int, _rule(check_province)]
    district: str
    application_type: ApplicationType
    category_code: Annotated[str | None, _rule(check_category_code)] = None
    subject: Annotated[str, _rule(check_subject)]
    text: Annotated[str, _rule(check_text)]
    location: Location | None = None
    # Set by the officer at the counter (the applicant is escorted); no other channel may.
    priority: Priority | None = None
    # Ids from POST /api/v1/attachments; checked and claimed when the application is registered.
    attachments: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=MAX_ATTACHMENT_IDS
    )
    # The call centre's: the number the citizen called from (personal data: stored sealed).
    caller_number: str | None = Field(default=None, validate_default=True)
    # "Kimliğimin ilgili kuruma gösterilmesine izin veriyorum": for şikayet and ihbar the
    # institution sees who applied only with this consent (events.SHIELDED_TYPES).
    identity_consent: StrictBool = False

    @field_validator("caller_number")
    @classmethod
    def _caller(cls, value: str | None, info: ValidationInfo) -> str | None:
        from_call_centre = info.data.get("channel") is Channel.call_center
        if value is None:
            if from_call_centre:
                raise PydanticCustomError("missing", "Field required")
            return None
        if not from_call_centre:
            raise PydanticCustomError(
                "caller_number_call_centre_only",
                "Arayan numara yalnız çağrı merkezi başvurularında verilir.",
            )
        try:
            return check_caller_number(value)
        except RuleViolation as exc:
            raise PydanticCustomError(exc.code, exc.message) from None

    @field_validator("priority")
    @classmethod
    def _priority_at_the_counter(
        cls, value: Priority | None, info: ValidationInfo
    ) -> Priority | None:
        if value is not None and info.data.get("channel") is not Channel.counter:
            raise PydanticCustomError(
                "priority_counter_only",
                "Öncelik işaretini yalnız Açık Kapı masasındaki görevli koyabilir.",
            )
        return value

    @field_validator("province_code", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # Lax ints take true/false as 1/0: `true` would have registered the application in Adana.
        if isinstance(value, bool):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value

    @field_validator("province_code")
    @classmethod
    def _served(cls, value: int, info: ValidationInfo) -> int:
        # Only where routing has the province's headings and institutions: anywhere else the
        # application would be numbered and sent an SMS, and then could never be routed.
        served = (info.context or {}).get("served")
        if served is not None and value not in served:
            raise PydanticCustomError(
                "province_not_served",
                "{province} için Açık Kapı'da henüz başvuru alınmıyor: bu ilin konu ve kurum "
                "tablosu yüklenmemiş. Başvurunuzu ilgili valiliğe iletebilirsiniz.",
                {"province": province_name(value)},
            )
        return value

    @field_validator("district")
    @classmethod
    def _known_district(cls, value: str, info: ValidationInfo) -> str:
        directory = (info.context or {}).get("districts", EMPTY_DIRECTORY)
        # With a bad province there is nothing to look the district up in: that error is enough.
        province = info.data.get("province_code", 0)
        try:
            return str(directory.canonical(province, value))
        except RuleViolation as exc:
            raise PydanticCustomError(exc.code, exc.message) from None


def validate_application(
    raw: Any,
    districts: DistrictDirectory,
    served: Container[int] | None = None,
    *,
    identity_proven: bool = False,
) -> ApplicationForm:
    """Check a body against every rule; raises pydantic.ValidationError listing each bad field.
    `served`: the provinces routing serves (None: not checked, as in rule tests).
    `identity_proven`: the identity came from a verified source (e-Devlet), not the form."""
    context = {"districts": districts, "served": served, "identity_proven": identity_proven}
    return ApplicationForm.model_validate(raw, context=context)


# --- Numbering ---------------------------------------------------------------------------------


def numbering_year(received_at: datetime) -> int:
    """The year in the number is the Turkish calendar year of receipt (Europe/Istanbul)."""
    return received_at.astimezone(ISTANBUL).year


def counter_key(province_code: int, year: int) -> str:
    return f"{province_code:02d}-{year}"


class BlockSource(Protocol):
    async def reserve(self, key: str, size: int) -> int:
        """Atomically raise the counter `key` by `size`; return its new value (the block's top)."""
        ...


@dataclass
class _Block:
    next: int = 1
    top: int = 0  # next > top: exhausted
    returned: list[int] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SequenceAllocator:
    """Hands out per-(province, year) sequence numbers from blocks reserved in the database.

    One atomic increment reserves `block_size` numbers for this process (hi/lo), so the
    database sees one write per block instead of one per application, and any number of
    processes never hand out the same number. Numbers left in a block when a process stops
    are never used: the sequence has small gaps, never duplicates. Ordering across processes
    is approximate (each works through its own block).
    """

    def __init__(self, source: BlockSource, block_size: int = 50) -> None:
        if block_size < 1:
            raise ValueError("block size must be positive")
        self._source = source
        self._block_size = block_size
        self._blocks: dict[str, _Block] = {}

    async def next(self, province_code: int, year: int) -> int:
        key = counter_key(province_code, year)
        block = self._block(key)
        taken = self._take(block)
        if taken is not None:
            return taken
        # Only refills wait on the lock; the fast path above has no await, so it cannot race.
        async with block.lock:
            taken = self._take(block)
            if taken is not None:
                return taken
            top = await self._source.reserve(key, self._block_size)
            block.next, block.top = top - self._block_size + 1, top
            taken = self._take(block)
            assert taken is not None
            return taken

    def give_back(self, province_code: int, year: int, sequence: int) -> None:
        """A number that was allocated but never stored (the request was a repeat) is reused."""
        self._block(counter_key(province_code, year)).returned.append(sequence)

    def _block(self, key: str) -> _Block:
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = _Block()
        return block

    @staticmethod
    def _take(block: _Block) -> int | None:
        if block.returned:
            return block.returned.pop()
        if block.next <= block.top:
            taken = block.next
            block.next += 1
            return taken
        return None


# --- A registered application --------------------------------------------------------------------


class RegisteredApplication(ApplicationFacts):
    """What intake keeps and announces about an application; the clear TC Kimlik No is not here."""

    model_config = ConfigDict(frozen=True)

    application_id: str
    applicant: ApplicantContact
    idempotency_key: str | None = None
    submission_id: str | None = None
    recorded_by: str | None = None
    caller_number: str | None = None  # E.164; the call centre's only
    identity_consent: bool = False  # the institution may see who applied (ApplicationForm)
    # Keyed hash of the submitted body, kept with a key: the same key with another body conflicts.
    fingerprint: str | None = None
    published: bool = False  # its events are on the bus (its outbox is empty)
