"""The institution workflow's own rules, with no I/O: where an application stands in an
institution's hands (its stage), which steps the citizen sees, who may do what, when an answer
waits for a supervisor's approval, how the parts of a split application are named and how
their answers add up to one outcome.

The public statuses (`services.common.events.Status`) are the contract every service reads;
the stages here are finer and tracking's own: "waiting for the citizen" and "answer awaiting
approval" are both the public status `opened`, so no reader of the status topic has to learn
them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from enum import StrEnum

from services.common.auth import Role
from services.common.events import SHIELDED_TYPES, ApplicationType, Outcome
from services.common.turkish import turkish_lower


class Stage(StrEnum):
    """Where an application stands in the institution's hands."""

    unrouted = "unrouted"  # no institution yet (received, awaiting routing)
    new = "new"  # routed to the institution, not opened yet
    opened = "opened"
    waiting_for_citizen = "waiting_for_citizen"
    awaiting_approval = "awaiting_approval"
    answered = "answered"
    closed = "closed"
    returned = "returned"  # not its competence: routing's officers decide again
    forwarded = "forwarded"  # handed to another institution, on its way there
    split_up = "split"  # in parts, each answered on its own


# Still to be dealt with by the institution that holds it.
ACTIVE_STAGES: frozenset[Stage] = frozenset(
    {Stage.new, Stage.opened, Stage.waiting_for_citizen, Stage.awaiting_approval}
)

STAGE_LABELS: dict[Stage, str] = {
    Stage.unrouted: "Yönlendirme bekliyor",
    Stage.new: "Yeni",
    Stage.opened: "İnceleniyor",
    Stage.waiting_for_citizen: "Vatandaştan bilgi bekleniyor",
    Stage.awaiting_approval: "Cevap onay bekliyor",
    Stage.answered: "Cevaplandı",
    Stage.closed: "Kapandı",
    Stage.returned: "İade edildi",
    Stage.forwarded: "Başka kuruma aktarıldı",
    Stage.split_up: "Bölümlere ayrıldı",
}


class Step(StrEnum):
    """A step of the workflow that is not a public status transition of its own (or, for a
    forward and a split, says what kind of `returned` it was)."""

    assigned = "assigned"
    information_requested = "information_requested"
    information_received = "information_received"
    answer_submitted = "answer_submitted"
    answer_sent_back = "answer_sent_back"
    answer_approved = "answer_approved"
    forwarded = "forwarded"
    split_up = "split"
    part_answered = "part_answered"
    extended = "extended"


# What the citizen's timeline says for each step: never a staff member's name.
STEP_LABELS: dict[Step, str] = {
    Step.assigned: "İlgili birime havale edildi",
    Step.information_requested: "Sizden ek bilgi istendi",
    Step.information_received: "Ek bilginiz alındı",
    Step.answer_submitted: "Cevap hazırlandı, onay bekliyor",
    Step.answer_sent_back: "Cevap düzeltilmek üzere kuruma geri gönderildi",
    Step.answer_approved: "Cevap onaylandı",
    Step.forwarded: "Başka kuruma aktarıldı",
    Step.split_up: "Bölümlere ayrıldı",
    Step.part_answered: "Bir bölüm cevaplandı",
    Step.extended: "Cevap süresi uzatıldı",
}


# --- who may do what -------------------------------------------------------------------------


class Action(StrEnum):
    view = "view"
    open = "open"
    assign = "assign"
    ask_information = "ask_information"
    answer = "answer"
    return_ = "return"
    forward = "forward"
    split_up = "split"
    approve = "approve"  # approve or send back an answer
    unmask = "unmask"  # reveal a shielded applicant to the institution, with a reason


# The institution's own acts on its own applications; an admin may stand in for it.
INSTITUTION_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.open,
        Action.assign,
        Action.ask_information,
        Action.answer,
        Action.return_,
        Action.forward,
        Action.split_up,
    }
)
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.institution: INSTITUTION_ACTIONS | {Action.view},
    # Açık Kapı's supervisors read the lists of their province's institutions, approve
    # answers and unmask shielded applicants; they do not act in an institution's name.
    Role.supervisor: frozenset({Action.view, Action.approve, Action.unmask}),
    Role.admin: frozenset(Action),
    # Every other role (officers, governors, auditors, citizens) has no business in the inbox.
}


def may(
    role: Role,
    action: Action,
    *,
    own_institution: str | None = None,
    institution_code: str | None = None,
    own_province: int | None = None,
    province_code: int | None = None,
) -> bool:
    """Whether a principal with `role` (of `own_institution` / `own_province`, as the token
    says) may do `action` on an application held by `institution_code` in `province_code`
    (None: not known yet). A supervisor's token must name their province."""
    if action not in ROLE_ACTIONS.get(role, frozenset()):
        return False
    if role is Role.institution:
        return own_institution is not None and own_institution == institution_code
    if role is Role.supervisor:
        return own_province is not None and province_code in (None, own_province)
    return True


def unit_key(unit: str | None) -> str | None:
    """A sub-unit's name as assignments and tokens are compared (case and Turkish letters
    folded: "Su Arıza Birimi" and "SU ARIZA BİRİMİ" are one unit)."""
    return search_key(unit) if unit else None


def in_unit(own_unit: str | None, assigned_unit: str | None) -> bool:
    """Whether staff of `own_unit` (None: the whole institution) may see an application the
    institution assigned to `assigned_unit`. A sub-unit's staff see only what was assigned
    (havale) to their unit; the institution's central desk sees and assigns everything."""
    return own_unit is None or unit_key(own_unit) == unit_key(assigned_unit)


# --- the complainant shield (lekelenmeme hakkı) ------------------------------------------------

SHIELD_NOTICE = "Şikâyetçinin kimliği, lekelenmeme hakkı gereği gizlenmiştir."


def identity_shielded(
    application_type: ApplicationType | None, consent: bool, unmaskings: Sized
) -> bool:
    """Whether the institution must not see who applied: a şikâyet or an ihbar whose applicant
    did not consent and whom no supervisor unmasked."""
    return application_type in SHIELDED_TYPES and not consent and len(unmaskings) == 0


# Which institution acts each stage allows (the inbox offers only these).
_BY_STAGE: dict[Stage, frozenset[Action]] = {
    Stage.new: INSTITUTION_ACTIONS,
    Stage.opened: INSTITUTION_ACTIONS - {Action.open},
    Stage.waiting_for_citizen: frozenset(
        {Action.assign, Action.answer, Action.return_, Action.forward, Action.split_up}
    ),
    Stage.awaiting_approval: frozenset({Action.assign}),
}


def available_actions(stage: Stage, *, is_part: bool = False) -> frozenset[Action]:
    """The institution's acts that an application at `stage` allows. A part of a split
    application is not split again, and its citizen is not asked through it (the citizen
    follows the whole application, whose number the SMS and the status page know)."""
    actions = _BY_STAGE.get(stage, frozenset())
    return actions - {Action.split_up, Action.ask_information} if is_part else actions


# --- answer approval -------------------------------------------------------------------------


def parse_list(text: str) -> frozenset[str]:
    """A comma-separated setting as a set of its non-empty items."""
    return frozenset(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class ApprovalPolicy:
    """Where a province wants an Açık Kapı supervisor to approve an answer before it reaches the
    citizen: answers of these institutions, and answers to applications of these types."""

    institutions: frozenset[str] = frozenset()
    types: frozenset[ApplicationType] = frozenset()

    @classmethod
    def of(cls, institutions: str, types: str) -> ApprovalPolicy:
        """From the settings' comma-separated lists; an unknown type is a configuration error."""
        try:
            kinds = frozenset(ApplicationType(t) for t in parse_list(types))
        except ValueError as exc:
            raise ValueError(f"answer_approval_types: {exc}") from None
        return cls(parse_list(institutions), kinds)

    def requires(
        self, institution_code: str | None, application_type: ApplicationType | None
    ) -> bool:
        return (institution_code is not None and institution_code in self.institutions) or (
            application_type is not None and application_type in self.types
        )


NO_APPROVAL = ApprovalPolicy()


# --- split applications ----------------------------------------------------------------------

MIN_PARTS = 2
MAX_PARTS = 10


def part_id(parent_id: str, part_no: int) -> str:
    """A part's application id: its parent's, with the part's number (URL-safe, no slash)."""
    return f"{parent_id}.{part_no}"


def part_number(parent_number: str, part_no: int) -> str:
    """The number citizens and institutions read: the parent's, a slash and the part's number
    (e.g. 20-2026-0000123-4/1)."""
    return f"{parent_number}/{part_no}"


def overall_outcome(outcomes: Iterable[Outcome]) -> Outcome:
    """The outcome of a split application once every part is answered.

    The rule: every part olumlu → olumlu; every part olumsuz → olumsuz; anything else
    (a mix, or any part kısmen olumlu) → kısmen olumlu.
    """
    seen = set(outcomes)
    if not seen:
        raise ValueError("no outcomes to combine")
    if seen == {Outcome.olumlu}:
        return Outcome.olumlu
    if seen == {Outcome.olumsuz}:
        return Outcome.olumsuz
    return Outcome.kismen_olumlu


# --- the inbox's text search -----------------------------------------------------------------

_NON_WORD = re.compile(r"[^0-9a-z]+")
_FOLD = str.maketrans({"ı": "i"})


def search_key(text: str) -> str:
    """Text as the inbox's search compares it: Turkish lower case folded to ASCII letters and
    digits, single-spaced ("Çöp TOPLANMIYOR" → "cop toplanmiyor"), so a search typed without
    Turkish letters finds it."""
    lowered = turkish_lower(text).translate(_FOLD)
    ascii_only = unicodedata.normalize("NFKD", lowered).encode("ascii", "ignore").decode()
    return _NON_WORD.sub(" ", ascii_only).strip()
