"""Demo data through the real pipeline: Denizli's published shape, 631 applications, all answered
(263 olumlu, 123 olumsuz, 245 kısmen olumlu).

Nothing is written to any database directly. Applications go in through intake's HTTP API
(web, mobile, e-Devlet, and counter with an officer token), with category codes taken from
routing's taxonomy; a few come without a category and an officer routes them. Then each
institution, with its own token, waits until tracking lists the application and answers it.
Finally the loader polls reporting's summary until it shows exactly the planned figures.

Re-running adds nothing: every application has a deterministic `Idempotency-Key` and body, so
intake returns the first answer; answers already given come back 409 and are counted.

    .venv/bin/python deploy/local/seed_demo.py [--count 631] [--province 20] [--seed 2024]
                                               [--timeout 600]

Addresses: AK_INTAKE_URL, AK_ROUTING_URL, AK_TRACKING_URL, AK_REPORTING_URL (default
http://127.0.0.1:<AK_<SERVICE>_PORT or 8001..8005>); tokens are minted with AK_JWT_SECRET.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from stdnum.tr import tckimlik

try:
    import services  # noqa: F401  (installed in the venv as an editable package)
except ImportError:  # run from a plain checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.common.auth import Role, issue_token
from services.common.devtoken import edevlet_assertion
from services.common.settings import Settings, get_settings
from services.intake.identity import demo_persons
from services.intake.verification import phone_token_for
from services.routing.domain import PublicTaxonomy

# Denizli Valiliği's published figures: every application answered, in these proportions.
DENIZLI_OUTCOMES: dict[str, int] = {"olumlu": 263, "olumsuz": 123, "kismen_olumlu": 245}
DENIZLI_TOTAL = sum(DENIZLI_OUTCOMES.values())  # 631
DEFAULT_SEED = 2024
DENIZLI = 20
CONCURRENCY = 20
PROGRESS_EVERY = 50
# One application in this many arrives without a category and is routed by an officer.
UNCATEGORISED_EVERY = 33

OUTCOME_LABELS = {"olumlu": "olumlu", "olumsuz": "olumsuz", "kismen_olumlu": "kısmen olumlu"}


# --- Pure parts (unit-tested) --------------------------------------------------------------


def outcome_counts(count: int) -> dict[str, int]:
    """Denizli's proportions scaled to `count` (largest remainder): exact for 631."""
    if count < 0:
        raise ValueError("count must not be negative")
    # Integer arithmetic: no rounding surprises, and 631 gives the published figures exactly.
    shares = {k: divmod(count * v, DENIZLI_TOTAL) for k, v in DENIZLI_OUTCOMES.items()}
    counts = {k: whole for k, (whole, _) in shares.items()}
    short = count - sum(counts.values())
    order = list(DENIZLI_OUTCOMES)
    by_remainder = sorted(order, key=lambda k: (-shares[k][1], order.index(k)))
    for k in by_remainder[:short]:
        counts[k] += 1
    return counts


def plan_outcomes(count: int, seed: int = DEFAULT_SEED) -> list[str]:
    """Which outcome application n (0-based) gets: the exact counts, in a seeded shuffle."""
    plan = [k for k, n in outcome_counts(count).items() for _ in range(n)]
    random.Random(f"outcomes:{seed}:{count}").shuffle(plan)
    return plan


def tckn(rng: random.Random) -> str:
    """A TC Kimlik No with valid check digits (random, so never a known person's)."""
    first9 = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
    return first9 + tckimlik.calc_check_digits(first9)


_MOBILE_PREFIXES = ("530", "532", "533", "535", "536", "542", "543", "544", "505", "506", "555")


def mobile_phone(rng: random.Random) -> str:
    return f"+90{rng.choice(_MOBILE_PREFIXES)}{rng.randint(0, 9_999_999):07d}"


def idempotency_key(n: int, seed: int, province: int) -> str:
    if seed == DEFAULT_SEED and province == DENIZLI:
        return f"demo-{n}"
    return f"demo-{province}-{seed}-{n}"


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    heading_code: str
    heading_name: str


@dataclass(frozen=True)
class Taxonomy:
    categories: list[Category]
    institutions: list[str]


def parse_taxonomy(document: Any) -> Taxonomy:
    """The categories and institution codes of routing's public taxonomy, read through routing's
    own model of it (a change there fails here, not silently in the demo)."""
    public = PublicTaxonomy.model_validate(document)
    categories = [
        Category(
            code=category.code,
            name=category.name,
            heading_code=heading.code,
            heading_name=heading.name,
        )
        for heading in public.headings
        for category in heading.categories
    ]
    return Taxonomy(categories, [institution.code for institution in public.institutions])


# The demo's sample data (districts and their weights, names, texts, answers), in Turkish:
# deploy/local/data/demo_samples.json.
SAMPLES = json.loads((Path(__file__).with_name("data") / "demo_samples.json").read_text("utf-8"))
DENIZLI_DISTRICTS = SAMPLES["denizli_districts"]
NEIGHBOURHOODS = SAMPLES["neighbourhoods"]
COMMON_NEIGHBOURHOODS = SAMPLES["common_neighbourhoods"]
CHANNELS = SAMPLES["channels"]
TYPES = SAMPLES["types"]
HEADING_WEIGHTS = SAMPLES["heading_weights"]
FIRST_NAMES = SAMPLES["first_names"]
LAST_NAMES = SAMPLES["last_names"]
INITIAL_LETTERS = SAMPLES["initial_letters"]
DETAILS = SAMPLES["details"]
GENERIC_DETAILS = SAMPLES["generic_details"]
DURATIONS = SAMPLES["durations"]
SUBJECTS = SAMPLES["subjects"]
TEXTS = SAMPLES["texts"]
ANSWERS = SAMPLES["answers"]


def _weighted(rng: random.Random, weights: Mapping[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _turkish_lower(text: str) -> str:
    return text.replace("I", "ı").replace("İ", "i").lower()


def _pick_category(rng: random.Random, categories: list[Category]) -> Category:
    headings = sorted({c.heading_code for c in categories})
    heading = rng.choices(headings, weights=[HEADING_WEIGHTS.get(h, 1) for h in headings])[0]
    return rng.choice([c for c in categories if c.heading_code == heading])


def registry_person(n: int, seed: int) -> dict[str, str]:
    """The person of the demo registry who makes application n: a different one for each of
    the first len(registry) applications (7919 is prime, so it steps through every index), so
    no one reaches the daily limit of applications per TC Kimlik No."""
    persons = _persons()
    return persons[(n * 7919 + seed) % len(persons)]


_PERSONS: list[dict[str, str]] = []


def _persons() -> list[dict[str, str]]:
    if not _PERSONS:
        _PERSONS.extend(demo_persons())
    return _PERSONS


def build_application(
    n: int, seed: int, province: int, categories: list[Category]
) -> tuple[dict[str, Any], Category]:
    """The body of demo application n: the same every time for the same n, seed and taxonomy.

    Returns the body and the category the text is about; the body carries that category's code
    except for one application in `UNCATEGORISED_EVERY`, which an officer routes.
    """
    rng = random.Random(f"application:{seed}:{province}:{n}")
    person = registry_person(n, seed)
    category = _pick_category(rng, categories)
    district = _weighted(rng, DENIZLI_DISTRICTS) if province == DENIZLI else "Merkez"
    neighbourhood = rng.choice(NEIGHBOURHOODS.get(district, COMMON_NEIGHBOURHOODS))
    kind = _weighted(rng, TYPES)
    topic = category.name
    detail = rng.choice(DETAILS.get(category.heading_code, GENERIC_DETAILS))
    text = TEXTS[kind].format(
        ilce=district,
        mahalle=neighbourhood,
        detay=detail,
        konu_k=_turkish_lower(topic[:1]) + topic[1:],
        sure=rng.choice(DURATIONS),
    )
    body: dict[str, Any] = {
        "channel": _weighted(rng, CHANNELS),
        # Someone the identity check knows (intake's demo registry), from their own phone.
        "applicant": {
            key: person[key]
            for key in ("tckn", "first_name", "last_name", "mother_maiden_initials", "phone")
        },
        "province_code": province,
        "district": district,
        "application_type": kind,
        "subject": rng.choice(SUBJECTS[kind]).format(konu=topic)[:200],
        "text": text,
    }
    if n % UNCATEGORISED_EVERY != 0:
        body["category_code"] = category.code
    return body, category


def answer_text(n: int, outcome: str) -> str:
    return ANSWERS[outcome][n % len(ANSWERS[outcome])]


# --- Talking to the services ---------------------------------------------------------------


class SeedError(RuntimeError):
    """The demo cannot be loaded; the message says why, in Turkish."""


@dataclass
class Demo:
    n: int
    body: dict[str, Any]
    category: Category
    outcome: str
    application_id: str | None = None
    application_number: str | None = None
    routed_by_officer: bool = False
    answered: bool = False
    already_answered: bool = False


@dataclass
class Progress:
    """Prints "<label>: done/total" every `PROGRESS_EVERY` steps and at the end."""

    label: str
    total: int
    done: int = 0

    def step(self) -> None:
        self.done += 1
        if self.done % PROGRESS_EVERY == 0 or self.done == self.total:
            print(f"{self.label}: {self.done}/{self.total}", flush=True)


def service_url(settings: Settings, name: str) -> str:
    env = os.environ.get(f"AK_{name.upper()}_URL")
    if env:
        return env.rstrip("/")
    return f"http://127.0.0.1:{getattr(settings, f'{name}_port')}"


class Loader:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        count: int,
        province: int,
        seed: int,
        timeout: float,
    ) -> None:
        self.http = http
        self.settings = settings
        self.count = count
        self.province = province
        self.seed = seed
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.urls = {s: service_url(settings, s) for s in ("intake", "routing", "tracking")}
        self.urls["reporting"] = service_url(settings, "reporting")
        self.officer = self._bearer(Role.officer, "demo-memur")
        self.supervisor = self._bearer(Role.supervisor, "demo-vali-yardimcisi")
        self._institution_tokens: dict[str, dict[str, str]] = {}

    def _bearer(self, role: Role, subject: str, institution: str | None = None) -> dict[str, str]:
        token = issue_token(
            self.settings,
            subject=subject,
            role=role,
            institution=institution,
            province=self.province,
        )
        return {"Authorization": f"Bearer {token}"}

    def institution_headers(self, code: str) -> dict[str, str]:
        if code not in self._institution_tokens:
            self._institution_tokens[code] = self._bearer(
                Role.institution, f"demo-{code.lower()}", institution=code
            )
        return self._institution_tokens[code]

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call, retried while the service is starting or briefly unreachable."""
        delay = 0.5
        while True:
            try:
                async with self.limit:
                    response = await self.http.request(method, url, **kwargs)
                if response.status_code not in (502, 503, 504):
                    return response
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}"
            if self.remaining() <= 0:
                raise SeedError(f"{url} yanıt vermiyor ({problem}); süre doldu.")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def wait_ready(self) -> None:
        for name, base in self.urls.items():
            while True:
                try:
                    if (await self.http.get(f"{base}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if self.remaining() <= 0:
                    raise SeedError(f"{name} servisi hazır değil ({base}/readyz); süre doldu.")
                await asyncio.sleep(1.0)

    async def taxonomy(self) -> Taxonomy:
        response = await self.request(
            "GET",
            f"{self.urls['routing']}/api/v1/taxonomy",
            params={"province_code": self.province},
        )
        if response.status_code != 200:
            raise SeedError(f"Kategori ağacı alınamadı: HTTP {response.status_code}")
        taxonomy = parse_taxonomy(response.json())
        if not taxonomy.categories:
            raise SeedError("Kategori ağacında hiç kategori yok (routing taksonomisi boş).")
        return taxonomy

    # 1. Applications in through intake.

    async def submit(self, demo: Demo, progress: Progress) -> None:
        # The loader posts for many citizens from one address, as a channel adapter does: its
        # staff token keeps it out of the rate per client address (the counter needs it anyway).
        headers = {"Idempotency-Key": idempotency_key(demo.n, self.seed, self.province)}
        headers.update(self.officer)
        body = demo.body
        if body["channel"] in ("web", "mobile"):
            # As if the citizen had typed the code sent to their phone (the SMS step is skipped).
            phone = body["applicant"]["phone"]
            body = {**body, "phone_verification": phone_token_for(self.settings, phone)}
        elif body["channel"] == "edevlet":
            # As the e-Devlet gateway would vouch for the citizen (the local development key).
            applicant = body["applicant"]
            assertion = edevlet_assertion(
                self.settings,
                tckn=applicant["tckn"],
                first_name=applicant["first_name"],
                last_name=applicant["last_name"],
            )
            body = {**body, "edevlet_assertion": assertion}
        response = await self.request(
            "POST", f"{self.urls['intake']}/api/v1/applications", json=body, headers=headers
        )
        if response.status_code != 201:
            raise SeedError(
                f"Başvuru {demo.n} kaydedilemedi: HTTP {response.status_code} {response.text[:300]}"
            )
        answer = response.json()
        demo.application_id = answer["application_id"]
        demo.application_number = answer["application_number"]
        progress.step()

    # 2. An officer routes the ones that came without a category.

    async def pending_ids(self) -> set[str]:
        """The applications waiting for an officer (routing pages by offset)."""
        found: set[str] = set()
        offset = 0
        while True:
            response = await self.request(
                "GET",
                f"{self.urls['routing']}/api/v1/routing/pending",
                params={"limit": 200, "offset": offset},
                headers=self.officer,
            )
            if response.status_code != 200:
                return found
            document = response.json()
            items, _ = _items_and_cursor(document)
            found.update(str(i.get("application_id")) for i in items)
            offset += len(items)
            if not items or offset >= int(document.get("total", 0)):
                return found

    async def route(self, demo: Demo) -> None:
        response = await self.request(
            "POST",
            f"{self.urls['routing']}/api/v1/routing/{demo.application_id}/route",
            json={"category_code": demo.category.code},
            headers=self.officer,
        )
        # 409: routed meanwhile (by routing itself, or by a previous run of this loader).
        if response.status_code in (200, 201, 202, 204, 409):
            demo.routed_by_officer = True

    # 3. Each institution answers what tracking lists for it.

    async def institution_queue(self, code: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            response = await self.request(
                "GET",
                f"{self.urls['tracking']}/api/v1/institutions/{code}/applications",
                params=params,
                headers=self.institution_headers(code),
            )
            if response.status_code != 200:
                return items
            page, cursor = _items_and_cursor(response.json())
            items.extend(page)
            if not cursor:
                return items

    async def answer(self, code: str, demo: Demo, progress: Progress) -> None:
        response = await self.request(
            "POST",
            f"{self.urls['tracking']}/api/v1/institutions/{code}/applications/"
            f"{demo.application_id}/response",
            json={"outcome": demo.outcome, "text": answer_text(demo.n, demo.outcome)},
            headers=self.institution_headers(code),
        )
        if response.status_code in (200, 201, 202):
            demo.answered = True
        elif response.status_code == 409:
            demo.answered = demo.already_answered = True
        else:
            return  # 404: not this institution's (any more) or not there yet; next round
        progress.step()

    async def answer_all(self, demos: list[Demo], institutions: list[str]) -> None:
        by_id = {d.application_id: d for d in demos}
        uncategorised = [d for d in demos if "category_code" not in d.body]
        progress = Progress("Cevaplar veriliyor", len(demos))
        while True:
            waiting = [d for d in uncategorised if not d.routed_by_officer and not d.answered]
            if waiting:
                pending = await self.pending_ids()
                await asyncio.gather(
                    *(self.route(d) for d in waiting if d.application_id in pending)
                )
            queues = await asyncio.gather(*(self.institution_queue(c) for c in institutions))
            jobs: list[Awaitable[None]] = []
            for code, items in zip(institutions, queues, strict=True):
                for item in items:
                    demo = by_id.get(str(item.get("application_id")))
                    if demo is None or demo.answered:
                        continue
                    if item.get("status") in ("answered", "closed"):
                        demo.answered = demo.already_answered = True
                        progress.step()
                    elif item.get("status") != "returned":
                        jobs.append(self.answer(code, demo, progress))
            await asyncio.gather(*jobs)
            left = [d for d in demos if not d.answered]
            if not left:
                return
            if self.remaining() <= 0:
                sample = ", ".join(str(d.application_number) for d in left[:5])
                raise SeedError(
                    f"{len(left)} başvuru süre içinde hiçbir kurumun listesinde görünmedi "
                    f"(ör. {sample}). Yönlendirme ve izleme servislerinin günlüklerine bakın."
                )
            await asyncio.sleep(1.0)

    # 4. Reporting shows the planned figures.

    async def wait_for_report(self, expected: dict[str, int]) -> dict[str, Any]:
        url = f"{self.urls['reporting']}/api/v1/reports/summary"
        last: dict[str, Any] = {}
        shown = -1
        while True:
            response = await self.request(
                "GET", url, params={"province_code": self.province}, headers=self.supervisor
            )
            if response.status_code == 200:
                last = response.json()
                if last["total"] == self.count and last["outcomes"] == expected:
                    return last
                if last["total"] > self.count and all(
                    last["outcomes"].get(k, 0) >= v for k, v in expected.items()
                ):
                    # Applications made since the demo was first loaded (a newcomer's first
                    # application, a benchmark) are counted too; the demo's own are all in.
                    print(
                        f"Raporda demo dışında {last['total'] - self.count} başvuru daha var "
                        "(önceki kullanımdan); demonun kendi başvurularının hepsi cevaplı.",
                        flush=True,
                    )
                    return last
                if last["answered"] // PROGRESS_EVERY != shown:
                    shown = last["answered"] // PROGRESS_EVERY
                    print(
                        f"Rapor bekleniyor: {last['answered']}/{self.count} cevap raporda",
                        flush=True,
                    )
            if self.remaining() <= 0:
                raise SeedError(
                    f"Rapor süre içinde beklenen sayılara ulaşmadı: toplam {last.get('total')} "
                    f"(beklenen {self.count}), sonuçlar {last.get('outcomes')} "
                    f"(beklenen {expected}). Raporlama servisinin günlüğüne bakın."
                )
            await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        print(
            f"Demo verisi yükleniyor: {self.count} başvuru, il {self.province}, tohum {self.seed}",
            flush=True,
        )
        await self.wait_ready()
        taxonomy = await self.taxonomy()
        if not taxonomy.institutions:
            raise SeedError("Kategori ağacında kurum bulunamadı; cevaplayacak kurum yok.")
        outcomes = plan_outcomes(self.count, self.seed)
        demos = []
        for n in range(1, self.count + 1):
            body, category = build_application(n, self.seed, self.province, taxonomy.categories)
            demos.append(Demo(n, body, category, outcomes[n - 1]))
        sent = Progress("Başvurular gönderiliyor", len(demos))
        await _all(self.submit(d, sent) for d in demos)
        await self.answer_all(demos, taxonomy.institutions)
        before = sum(d.already_answered for d in demos)
        if before:
            print(f"Daha önce cevaplanmış (409) ve sayılan: {before}", flush=True)
        return await self.wait_for_report(outcome_counts(self.count))


def _items_and_cursor(document: Any) -> tuple[list[dict[str, Any]], str | None]:
    if isinstance(document, list):
        return [i for i in document if isinstance(i, dict)], None
    items = document.get("items") or document.get("applications") or []
    return [i for i in items if isinstance(i, dict)], document.get("next_cursor")


async def _all(jobs: Iterable[Awaitable[None]]) -> None:
    """Run every job; the first failure cancels the rest (the semaphore bounds concurrency)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Demo verisini gerçek servisler üzerinden yükler (Denizli: 631 başvuru)."
    )
    parser.add_argument("--count", type=int, default=DENIZLI_TOTAL, help="başvuru sayısı")
    parser.add_argument("--province", type=int, default=DENIZLI, help="il plaka kodu (1–81)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="rastgelelik tohumu")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="toplam bekleme süresi (saniye)"
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count en az 1 olmalıdır")
    if not 1 <= args.province <= 81:
        parser.error("--province 1 ile 81 arasında olmalıdır")
    return args


async def main_async(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        loader = Loader(
            http,
            settings,
            count=args.count,
            province=args.province,
            seed=args.seed,
            timeout=args.timeout,
        )
        try:
            report = await loader.run()
        except SeedError as exc:
            print(f"Demo verisi yüklenemedi: {exc}", file=sys.stderr, flush=True)
            return 1
    outcomes = ", ".join(f"{OUTCOME_LABELS[k]} {v}" for k, v in report["outcomes"].items())
    print(
        f"Demo verisi hazır ({time.monotonic() - started:.0f} sn): {report['total']} başvuru, "
        f"{report['answered']} cevaplı; {outcomes}.",
        flush=True,
    )
    print(f"Rapor: {loader.urls['reporting']}/rapor?province_code={args.province}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise SystemExit(asyncio.run(main_async(args, get_settings())))


if __name__ == "__main__":
    main()
