"""Chronic problems: what citizens keep bringing back — similar applications under one heading,
in one district (and neighbourhood), from different citizens, across several weeks.

Pure rules, no I/O. The texts reach this module masked of personal data (`mask_text`).

How a problem is found (bench/chronic.py measures it on tests/data/chronic_labelled.jsonl):
- Each text becomes a TF-IDF vector of word stems: lowered with Turkish rules, folded to ASCII
  (a quarter of citizens type without ş ğ ı ö ü ç), stop words and the masks' tags dropped, and
  every word cut to its first five letters. Five-letter truncation is a crude stemmer that Turkish
  retrieval studies found about as good as a morphological one ("kesintisi", "kesintiler" ->
  "kesin"), with no dictionary and no dependency; the stems of the verbs every complaint uses
  (yapılmıyor, gelmedi, ...) are dropped too. The IDF comes from the heading's texts across the
  province, so a word every text of the heading has ("su" under Altyapı ve Su) weighs little.
- Applications are compared only within their (province, district, heading) group, and only
  with those that share one of their rarest stems (an inverted index), never all pairs.
- Pairs at least `similarity` alike are joined, most alike first, into clusters, unless the
  two sides are in different neighbourhoods, or the merged cluster's members would be on
  average less alike than `cohesion` (average linkage, which stops a chain of small steps from
  joining two different problems). A text's neighbourhood is its record's (from the address),
  else one it names that other records of the district have ("Bağbaşı'nda ...").
- A cluster is chronic when it has at least `min_applications` applications from at least
  `min_citizens` citizens (a pseudonym of the phone) in at least `min_weeks` ISO weeks of the
  look-back window.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal, TypeVar

from stdnum.tr import tckimlik

from services.common.observability import _TCKN_RE
from services.common.pii import PiiCipher
from services.common.turkish import turkish_lower, turkish_upper
from services.common.turkish_time import ISTANBUL

Trend = Literal["artıyor", "azalıyor", "sabit"]
T = TypeVar("T")


@dataclass(frozen=True)
class ChronicRules:
    """When a cluster of applications counts as a chronic problem, and how alike is alike."""

    min_applications: int = 3
    min_citizens: int = 3
    min_weeks: int = 3
    window_weeks: int = 12
    # Cosine similarity of two texts' vectors for them to be joined, and the average similarity
    # of a cluster's members below which two clusters are not merged (tuned on the labelled set).
    similarity: float = 0.1
    cohesion: float = 0.1
    # How many of a text's rarest stems it is indexed by (candidate pairs share one of them).
    index_terms: int = 8
    examples: int = 3
    example_chars: int = 200
    keywords: int = 6


DEFAULT_RULES = ChronicRules()


@dataclass(frozen=True)
class ChronicInput:
    """One application as the detection reads it: where, under what, from whom (a pseudonym)
    and when, and its text, already masked."""

    application_id: str
    application_number: str
    province_code: int
    district: str
    neighbourhood: str | None  # the key of neighbourhood_of(); None when unknown
    heading_code: str
    heading_name: str
    institution_code: str
    institution_name: str
    citizen_key: str
    received_at: datetime
    text: str
    # The neighbourhood as people write it ("Sırakapılar"), for display.
    neighbourhood_name: str | None = None


@dataclass(frozen=True)
class WeekCount:
    week_start: date  # the Monday of the ISO week (Istanbul time)
    count: int


@dataclass(frozen=True)
class ChronicProblem:
    """A problem that keeps coming back, as the dashboard and the exports list it. `id` is
    stable while its first application stays in the window; `neighbourhood` is the name as
    people write it; `examples` are masked texts; `weekly` runs to the current week."""

    id: str
    province_code: int
    district: str
    neighbourhood: str | None
    heading_code: str
    heading_name: str
    institution_code: str
    institution_name: str
    count: int
    citizens: int
    weeks: int
    first_at: datetime
    last_at: datetime
    weekly: tuple[WeekCount, ...]
    trend: Trend
    examples: tuple[str, ...]
    keywords: tuple[str, ...]
    application_numbers: tuple[str, ...]
    application_ids: tuple[str, ...] = field(default=())
    # The institution each application went to, in the order of `application_numbers`: an
    # institution reading the problem sees only its own applications of it.
    member_institutions: tuple[str, ...] = field(default=())


# --- Masking ------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# TR, two check digits, 22 more digits (five groups of four and two), spaced or not.
_IBAN_RE = re.compile(r"(?<![\w])TR[ ]?\d{2}(?:[ ]?\d{4}){5}[ ]?\d{2}(?!\d)", re.IGNORECASE)
# Turkish numbers: +90 / 0090 / 90 / 0, then a 2xx-5xx area or mobile code and seven digits,
# spaced, dotted, dashed or bracketed as people write them ("0(532)1234567", "0 (532) 123 45 67").
_PHONE_RE = re.compile(
    r"(?<![\d+])(?:(?:\+|00)?90[ .-]?)?(?:0[ .-]?)?(?:\(0?[2-5]\d{2}\)|[2-5]\d{2})"
    r"[ .-]?\d{3}[ .-]?\d{2}[ .-]?\d{2}(?!\d)"
)
# Groups of digits with one separator between them (a space, a dot, a dash or " - "), as a TC
# Kimlik No is sometimes written: "123 456 789 50", "1234567895 0", "12345-678-950". Only eleven
# digits in whole groups that pass the number's check digits are masked, so dates, amounts,
# plates and street numbers stay.
_DIGIT_GROUPS_RE = re.compile(r"(?<!\d)\d+(?:(?:[ .-]| - )\d+)+(?!\d)")
_DIGITS_RE = re.compile(r"\d+")
# The endings a name takes written without an apostrophe ("Ayşenin", "Yılmazlara",
# "Ayşegile", "Ayşeninki"), in folded letters (ı -> i, ü -> u): "gil" (the family), the plural
# with or without a possessive, one case ending, then "ki". Only inflections, so a word made
# from a name ("Denizli" from "Deniz") stays.
_NAME_SUFFIX = r"(?:gil)?(?:l[ae]r[iu]?)?(?:[ny]?[iu]n?|[ny]?[ae]|n?[dt][ae]n?|y?l[ae])?(?:ki)?"
# A name ending in p, t or k softens before a vowel ending when written without an apostrophe
# ("Murat" -> "Muradın", "Burak" -> "Burağa"; ğ folds to g).
_SOFTENED = {"p": "b", "t": "d", "k": "g"}
_VOWEL_SUFFIX = r"(?:[iu]n?|[ae])(?:ki)?"
_FOLD = str.maketrans("çğıöşüâîû", "cgiosuaiu")


def _fold_char(char: str) -> str:
    low = turkish_lower(char)
    return (low if len(low) == 1 else char).translate(_FOLD)


def fold(text: str) -> str:
    """Lowered with Turkish rules and folded to ASCII letters, character for character (the
    result has the length of the text, so a match in it is a span of the text)."""
    return "".join(_fold_char(c) for c in text)


def mask_text(text: str, *, names: Sequence[str]) -> str:
    """The text without the personal data a citizen may write into it: IBANs, e-mail
    addresses, phone numbers, TC Kimlik Nos and the applicant's own names. Licence plates,
    street names and other people's titles stay: they say where and what, not who wrote."""
    text = _IBAN_RE.sub("[IBAN]", text)
    text = _EMAIL_RE.sub("[e-posta]", text)
    # Before the phones: a grouped number passing the TC Kimlik No check digits is one.
    text = _DIGIT_GROUPS_RE.sub(_mask_grouped_tckn, text)
    text = _PHONE_RE.sub("[telefon]", text)
    text = _TCKN_RE.sub("[TC kimlik no]", text)
    return _mask_names(text, names)


def _mask_grouped_tckn(match: re.Match[str]) -> str:
    """The run of digit groups with every eleven digits of whole groups that are a valid TC
    Kimlik No masked."""
    run = match.group()
    groups = [(g.start(), g.end()) for g in _DIGITS_RE.finditer(run)]
    out: list[str] = []
    last = 0
    i = 0
    while i < len(groups):
        j = i
        count = 0
        while j < len(groups) and count < 11:
            count += groups[j][1] - groups[j][0]
            j += 1
        start, end = groups[i][0], groups[j - 1][1]
        if count == 11 and tckimlik.is_valid(_digits_only(run[start:end])):
            out.append(run[last:start])
            out.append("[TC kimlik no]")
            last = end
            i = j
        else:
            i += 1
    out.append(run[last:])
    return "".join(out)


def _digits_only(text: str) -> str:
    return "".join(_DIGITS_RE.findall(text))


def _name_part_pattern(part: str) -> str:
    """A folded name part as a pattern: with an ending when it has three letters or more (a
    two-letter name plus an ending is too often an ordinary word)."""
    if sum(c.isalpha() for c in part) < 3:
        return re.escape(part)
    alternatives = [re.escape(part) + _NAME_SUFFIX]
    soft = _SOFTENED.get(part[-1])
    if soft:
        alternatives.append(re.escape(part[:-1] + soft) + _VOWEL_SUFFIX)
    return "(?:" + "|".join(alternatives) + ")"


def _mask_names(text: str, names: Sequence[str]) -> str:
    parts = sorted(
        {fold(p) for name in names for p in re.split(r"[\s\-]+", name) if len(p.strip()) >= 2},
        key=len,
        reverse=True,
    )
    if not parts:
        return text
    one = "(?:" + "|".join(_name_part_pattern(p) for p in parts) + ")"
    # Name parts next to each other ("Ayşe Nur Kaya") become one tag, with or without an ending
    # ("Ayşenin", "Yılmazlara"); an ending after an apostrophe stays ("'nin").
    pattern = re.compile(rf"(?<!\w){one}(?:[ \t]+{one})*(?!\w)")
    folded = fold(text)
    out: list[str] = []
    last = 0
    for match in pattern.finditer(folded):
        out.append(text[last : match.start()])
        out.append("[ad soyad]" if " " in match.group().strip() else "[ad]")
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def citizen_key(phone: str, pii_key: bytes) -> str:
    """A pseudonym of the applicant: a keyed hash of the phone number, for this purpose only
    (it matches no other store's index of the same phone)."""
    digits = re.sub(r"\D", "", phone)[-10:]
    return PiiCipher(pii_key).blind_index("reporting-chronic-citizen:" + digits)


# --- Neighbourhoods -----------------------------------------------------------------------------

# After folding: "Mahallesi", "Mahalle" (only after a capitalised name), "Mah.", "Mh.".
_MARKER_RE = re.compile(
    r"(?<![a-z0-9])(mahallesi(?:n(?:deki|den|de|e|in))?|mahalle|mah|mh)(?![a-z0-9])"
)
# Words before "mahallesi" that are not (part of) a name: "bizim mahallesi" is no place, and
# "Ben Kınıklı Mahallesi'nde" is Kınıklı.
_NOT_A_NAME = frozenset(
    """
    bizim sizin onun bu su o her hangi ayni yan komsu tum butun ilgili soz konusu adi ve ile de
    da ki ben biz sayin evim evimiz oturdugum oturdugumuz bulundugu bulundugumuz yasadigim
    """.split()
)


@dataclass(frozen=True)
class Neighbourhood:
    key: str  # folded, lower case: "sirakapilar"
    name: str  # as written, in Turkish title case: "Sırakapılar"


def parse_neighbourhood(address: str | None) -> Neighbourhood | None:
    """The mahalle an address or a text names ("Sırakapılar Mah.", "Sırakapılar Mahallesi'nde",
    "SIRAKAPILAR MH"), or None."""
    if not address:
        return None
    folded = fold(address)
    for marker in _MARKER_RE.finditer(folded):
        words = _name_before(address, marker.start(), bare=marker.group() == "mahalle")
        if words:
            name = " ".join(_title(w) for w in words)
            return Neighbourhood(key=" ".join(fold(w) for w in words), name=name)
    return None


def neighbourhood_of(address: str | None) -> str | None:
    """The key of the mahalle an address names (see parse_neighbourhood), or None."""
    found = parse_neighbourhood(address)
    return found.key if found else None


def _name_before(text: str, end: int, *, bare: bool) -> list[str]:
    """The words of the name just before a marker: capitalised words back to three (a
    multi-word name), else the one lower-case word before it ("sirakapilar mah")."""
    head = text[:end]
    tail = re.search(r"([^\W\d_][\w]*(?:[ ]+[^\W\d_][\w]*){0,3})[ ]*$", head)
    if not tail:
        return []
    words = tail.group(1).split()
    capitalised: list[str] = []
    for word in reversed(words):
        if not word[0].isupper() or len(capitalised) == 3 or fold(word) in _NOT_A_NAME:
            break
        capitalised.insert(0, word)
    if capitalised:
        return capitalised
    last = words[-1]
    if bare or fold(last) in _NOT_A_NAME or len(last) < 3:
        return []
    return [last]


def _title(word: str) -> str:
    low = turkish_lower(word)
    return turkish_upper(low[:1]) + low[1:]


# --- Text features ------------------------------------------------------------------------------

_TAG_RE = re.compile(r"\[[^\]]{1,20}\]|\*{3,}")
_TOKEN_RE = re.compile(r"[^\W\d_]+|\d{3,}")
STEM_LENGTH = 5

# Words that say nothing of the problem (lowered, compared before folding too: "şu" goes, "su",
# water, stays). Petition phrases, time words, function words, the verbs of complaining.
_STOP = frozenset(
    """
    ve veya ile ya da de ki mi mı mu mü bir bu şu o bunlar şunlar onlar ben sen biz siz
    benim bizim sizin onun için gibi kadar daha çok en az ama fakat ancak ne neden niçin nasıl
    hangi her hiç tüm bütün olan olarak oldu olduğu olmuş olmadı olmuyor oluyor olsun olur var
    yok değil diye ise bile sonra önce artık hala hâlâ halen hep lütfen rica ederim ediyorum
    ederiz ediyoruz sayın yetkili yetkililer ilgili ilgililer teşekkür teşekkürler merhaba iyi
    günler gün gündür günlerdir hafta haftadır haftalardır ay aydır aylardır yıl yıldır
    yıllardır saat saattir defa kez kere bugün dün yarın yine tekrar hakkında konusunda konu
    başvuru başvurum başvurumuz şikayet şikâyet şikayetçiyim talep talebi talebim istek sorunu
    sorun problem durum durumu gereğini gereğinin arz istiyoruz istiyorum bekliyoruz
    bekliyorum yapılsın edilsin bir an önce acil artık bıktık böyle şekilde zaman ne zaman
    """.split()
)
_STOP_FOLDED = frozenset(w.translate(_FOLD) for w in _STOP) - {"su"}
# Stems of the verbs any complaint uses (yapılmıyor, gelmedi, kaldı, çıktı, verilmedi, ...):
# shared by texts about anything, they made different problems look alike. And "mahalle"
# itself: the neighbourhood is compared as a field, the word says nothing.
_GENERIC_STEMS = frozenset(
    """
    yapiy yapil yapmi yapti geliy gelmi geldi gelen gidiy gitti kaldi kaliy oluyo olmus olmad
    ediyo edild edilm cikti cikiy veril verme veriy alami aldi aliyo bulam bulun geciy
    mahal mah mh
    """.split()
)
# A suffix after an apostrophe ("Kınıklı'da", "DESKİ'nin") is not a word of its own.
_APOSTROPHE_RE = re.compile(r"['’`´]\w*")


@dataclass
class _Doc:
    record: ChronicInput
    stems: Counter[str]
    surfaces: dict[str, Counter[str]]
    vector: dict[str, float] = field(default_factory=dict)
    place: str | None = None  # the neighbourhood's key, from the record or the text
    place_name: str | None = None


def stems_of(text: str) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """The stems of a text with their counts, and the words each stem came from."""
    stems: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)
    plain = _APOSTROPHE_RE.sub("", turkish_lower(_TAG_RE.sub(" ", text)))
    for word in _TOKEN_RE.findall(plain):
        if len(word) < 2 or word in _STOP:
            continue
        folded = word.translate(_FOLD)
        stem = folded[:STEM_LENGTH]
        if folded in _STOP_FOLDED or stem in _GENERIC_STEMS:
            continue
        stems[stem] += 1
        surfaces[stem][word] += 1
    return stems, surfaces


def _weigh(docs: list[_Doc]) -> None:
    """TF-IDF vectors, unit length; the IDF of each heading from that heading's texts."""
    by_heading: dict[str, list[_Doc]] = defaultdict(list)
    for doc in docs:
        by_heading[doc.record.heading_code].append(doc)
    for heading_docs in by_heading.values():
        df: Counter[str] = Counter()
        for doc in heading_docs:
            df.update(doc.stems.keys())
        n = len(heading_docs)
        idf = {t: math.log((n + 1) / (c + 1)) + 1.0 for t, c in df.items()}
        for doc in heading_docs:
            weights = {t: (1.0 + math.log(c)) * idf[t] for t, c in doc.stems.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            doc.vector = {t: w / norm for t, w in weights.items()}


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


# --- Clustering ---------------------------------------------------------------------------------


_CAPITALISED_RE = re.compile(r"[^\W\d_][\w]*")


def _place_names(docs: list[_Doc]) -> None:
    """Each text's neighbourhood: the record's, else one the text names that other records of
    the district name as their neighbourhood ("Bağbaşı'nda çöpler alınmıyor" when others wrote
    "Bağbaşı Mah."). Only a capitalised word of five letters or more counts, so that "yeni" or
    "çınar" in a sentence are not taken for Yeni Mahalle or Çınar."""
    known: dict[str, str] = {}
    for doc in docs:
        r = doc.record
        doc.place, doc.place_name = r.neighbourhood, r.neighbourhood_name or r.neighbourhood
        if r.neighbourhood and " " not in r.neighbourhood and len(r.neighbourhood) >= 5:
            known.setdefault(r.neighbourhood, doc.place_name or r.neighbourhood)
    if not known:
        return
    for doc in docs:
        if doc.place is not None:
            continue
        named: set[str] = set()
        for word in _CAPITALISED_RE.findall(_APOSTROPHE_RE.sub(" ", doc.record.text)):
            if word[0].isupper():
                key = fold(word)
                named.update(
                    k for k in known if key == k or (key.startswith(k) and len(key) - len(k) <= 4)
                )
        if len(named) == 1:
            doc.place = named.pop()
            doc.place_name = known[doc.place]


def _edges(docs: list[_Doc], rules: ChronicRules) -> list[tuple[float, int, int]]:
    """Pairs of texts at least `rules.similarity` alike. A pair is compared only when one of
    its texts is indexed by a stem the other has: each text is indexed by its rarest stems
    (its `rules.index_terms` heaviest weights), so a stem every text has finds no candidates."""
    postings: dict[str, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        for term in sorted(doc.vector, key=lambda t: -doc.vector[t])[: rules.index_terms]:
            postings[term].append(i)
    compared: set[tuple[int, int]] = set()
    edges: list[tuple[float, int, int]] = []
    for i, doc in enumerate(docs):
        candidates = {j for term in doc.vector for j in postings.get(term, ()) if j != i}
        for j in candidates:
            pair = (i, j) if i < j else (j, i)
            if pair in compared or _conflict(doc.place, docs[j].place):
                continue
            compared.add(pair)
            similarity = _dot(doc.vector, docs[j].vector)
            if similarity >= rules.similarity:
                edges.append((similarity, *pair))
    return edges


def _conflict(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


class _Clusters:
    """Union-find whose roots keep the sum of their members' vectors: the average similarity
    between two clusters' members is the dot product of their sums over the sizes' product."""

    def __init__(self, docs: list[_Doc]) -> None:
        self.parent = list(range(len(docs)))
        self.size = [1] * len(docs)
        self.total = [dict(d.vector) for d in docs]
        self.place = [d.place for d in docs]

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def try_merge(self, i: int, j: int, cohesion: float) -> None:
        a, b = self.find(i), self.find(j)
        if a == b or _conflict(self.place[a], self.place[b]):
            return
        cross = _dot(self.total[a], self.total[b])
        if cross / (self.size[a] * self.size[b]) < cohesion:
            return
        if self.size[a] < self.size[b]:
            a, b = b, a
        merged = self.total[a]
        for term, weight in self.total[b].items():
            merged[term] = merged.get(term, 0.0) + weight
        self.total[b] = {}
        self.parent[b] = a
        self.size[a] += self.size[b]
        self.place[a] = self.place[a] or self.place[b]

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            members[self.find(i)].append(i)
        return list(members.values())


def _cluster(docs: list[_Doc], rules: ChronicRules) -> list[list[int]]:
    _place_names(docs)
    clusters = _Clusters(docs)
    for _, i, j in sorted(_edges(docs, rules), key=lambda e: (-e[0], e[1], e[2])):
        clusters.try_merge(i, j, rules.cohesion)
    return clusters.groups()


# --- Detection ----------------------------------------------------------------------------------


def find_chronic(
    records: Iterable[ChronicInput], *, now: datetime, rules: ChronicRules = DEFAULT_RULES
) -> list[ChronicProblem]:
    """The chronic problems among the records received in the `rules.window_weeks` weeks up to
    `now`, most applications first."""
    since = now - timedelta(weeks=rules.window_weeks)
    docs = []
    for record in records:
        if since <= record.received_at <= now:
            stems, surfaces = stems_of(record.text)
            docs.append(_Doc(record, stems, surfaces))
    docs.sort(key=lambda d: (d.record.received_at, d.record.application_id))
    _weigh(docs)
    groups: dict[tuple[int, str, str], list[_Doc]] = defaultdict(list)
    for doc in docs:
        r = doc.record
        groups[(r.province_code, fold(r.district).strip(), r.heading_code)].append(doc)
    problems = []
    for group in groups.values():
        if len(group) < rules.min_applications:
            continue
        for members in _cluster(group, rules):
            if len(members) >= rules.min_applications:
                problem = _problem([group[i] for i in sorted(members)], now, rules)
                if problem is not None:
                    problems.append(problem)
    problems.sort(key=lambda p: (-p.count, -p.last_at.timestamp(), p.id))
    return problems


def week_start(at: datetime) -> date:
    day = at.astimezone(ISTANBUL).date()
    return day - timedelta(days=day.weekday())


def _problem(members: list[_Doc], now: datetime, rules: ChronicRules) -> ChronicProblem | None:
    records = [d.record for d in members]  # in order of receipt
    citizens = {r.citizen_key for r in records}
    weeks = Counter(week_start(r.received_at) for r in records)
    if len(citizens) < rules.min_citizens or len(weeks) < rules.min_weeks:
        return None
    first, last = records[0], records[-1]
    weekly = _weekly(weeks, week_start(first.received_at), week_start(now))
    institution = _most_frequent((r.institution_code, r.institution_name) for r in records)
    place = _most_frequent(d.place_name for d in members if d.place_name)
    identity = (
        f"{first.province_code}|{fold(first.district)}|{first.heading_code}|{first.application_id}"
    )
    return ChronicProblem(
        id=hashlib.sha256(identity.encode()).hexdigest()[:16],
        province_code=first.province_code,
        district=last.district,
        neighbourhood=place,
        heading_code=last.heading_code,
        heading_name=last.heading_name,
        institution_code=institution[0] if institution else last.institution_code,
        institution_name=institution[1] if institution else last.institution_name,
        count=len(records),
        citizens=len(citizens),
        weeks=len(weeks),
        first_at=first.received_at,
        last_at=last.received_at,
        weekly=weekly,
        trend=trend_of([w.count for w in weekly]),
        examples=_examples(members, rules),
        keywords=_keywords(members, rules.keywords),
        application_numbers=tuple(r.application_number for r in records),
        application_ids=tuple(r.application_id for r in records),
        member_institutions=tuple(r.institution_code for r in records),
    )


def _most_frequent(values: Iterable[T]) -> T | None:
    """The most frequent value; on a tie the one seen last (the newest application's)."""
    counts: Counter[T] = Counter()
    seen: dict[T, int] = {}
    for i, value in enumerate(values):
        counts[value] += 1
        seen[value] = i
    if not counts:
        return None
    return max(counts, key=lambda v: (counts[v], seen[v]))


def _weekly(weeks: Counter[date], first: date, current: date) -> tuple[WeekCount, ...]:
    """One count per week from the first application's week to the current one, zeros too."""
    out = []
    day = first
    while day <= max(current, first):
        out.append(WeekCount(day, weeks.get(day, 0)))
        day += timedelta(weeks=1)
    return tuple(out)


def trend_of(counts: Sequence[int]) -> Trend:
    """Rising, falling or steady: the applications of the span's last third against its first
    third (a span of one or two weeks compares its first and last week)."""
    if len(counts) < 2:
        return "sabit"
    third = max(1, len(counts) // 3)
    early, late = sum(counts[:third]), sum(counts[-third:])
    if late > early:
        return "artıyor"
    if late < early:
        return "azalıyor"
    return "sabit"


def _examples(members: list[_Doc], rules: ChronicRules) -> tuple[str, ...]:
    """The texts nearest the cluster's centre, one per citizen and no two the same, shortened
    at a word."""
    centre: dict[str, float] = defaultdict(float)
    for doc in members:
        for term, weight in doc.vector.items():
            centre[term] += weight
    ranked = sorted(members, key=lambda d: (-_dot(d.vector, centre), d.record.received_at))
    chosen: list[str] = []
    citizens: set[str] = set()
    for doc in ranked:
        example = shorten(doc.record.text, rules.example_chars)
        if doc.record.citizen_key in citizens or example in chosen:
            continue
        citizens.add(doc.record.citizen_key)
        chosen.append(example)
        if len(chosen) == rules.examples:
            break
    return tuple(chosen)


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _keywords(members: list[_Doc], limit: int) -> tuple[str, ...]:
    """The stems that weigh most in the cluster, each as the word most often written for it."""
    weight: dict[str, float] = defaultdict(float)
    spread: Counter[str] = Counter()
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)
    for doc in members:
        for term, w in doc.vector.items():
            weight[term] += w
            spread[term] += 1
        for term, words in doc.surfaces.items():
            surfaces[term].update(words)
    # A keyword is said by more than one application.
    ranked = sorted((t for t in weight if spread[t] > 1), key=lambda t: (-weight[t], t))
    return tuple(surfaces[t].most_common(1)[0][0] for t in ranked[:limit])
