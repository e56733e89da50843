"""Intake's pages as the server renders them: Turkish, accessible markup, the default province's
lists already in the page, everything escaped and served by intake itself; the two JSON routes
the pages read (the province's lists, the officer's session)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.auth import Role
from services.common.events import CategoryBrief, HeadingBrief, TaxonomyPublished
from services.common.settings import Settings
from services.intake.app import build_app
from services.intake.domain import ApplicantForm, ApplicationForm
from services.intake.pages import STATIC_DIR
from services.routing.messaging import taxonomy_published
from services.routing.taxonomy import default_registry
from tests.support import bearer

DENIZLI = taxonomy_published(default_registry().for_province(20))
HOSTILE = '<script>alert("x")</script>'


class Served:
    """What intake has read of routing's announcements (messaging.ServedProvinces)."""

    def __init__(self, *taxonomies: TaxonomyPublished, known: bool = True) -> None:
        self._taxonomies = {t.province_code: t for t in taxonomies}
        self._known = known

    def is_known(self) -> bool:
        return self._known

    def taxonomy(self, province_code: int) -> TaxonomyPublished | None:
        return self._taxonomies.get(province_code)

    def served(self) -> list[TaxonomyPublished]:
        return [self._taxonomies[code] for code in sorted(self._taxonomies)]


class Page(HTMLParser):
    """The elements of a page, each as (tag, attributes), and the text of each element by id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag not in ("input", "meta", "link", "br", "img"):
            self._open.append(attributes.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] = self.text.get(element_id, "") + data

    def all(self, tag: str | None = None, **wanted: str) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.elements
            if (tag is None or name == tag)
            and all(attrs.get(k.replace("_", "-")) == v for k, v in wanted.items())
        ]

    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.elements if "id" in attrs}


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: the pages and their JSON routes need neither Kafka nor MongoDB.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    app = build_app(settings)
    app.state.served = Served(DENIZLI)
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(app):
        yield client


@pytest.mark.parametrize("path", ["/basvuru", "/gise"])
async def test_a_page_is_turkish_and_loads_only_from_intake(http: httpx.AsyncClient, path: str):
    response = await http.get(path)

    assert response.status_code == 200
    html = response.text
    assert '<html lang="tr">' in html
    assert "T.C. Denizli Valiliği" in html
    page = Page(html)
    assert page.all("meta", name="viewport")
    # What the browser fetches by itself (a link to the tracking page is the citizen's to follow).
    loaded = [a.get("src") or a.get("href") for tag, a in page.elements if tag != "a"]
    assets = [url for url in loaded if url and url.startswith("/static/")]
    assert len(assets) >= 2
    assert not [url for url in loaded if url and "//" in url], "a page asks another host"
    for url in assets:
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500, url
    # No inline script may run: the policy allows scripts from intake only.
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    scripts = page.all("script")
    assert [a for a in scripts if a.get("src", "").startswith("/static/")]
    assert all(
        a.get("src", "").startswith("/static/") or a["type"] == "application/json" for a in scripts
    )


async def test_the_scripts_modules_import_only_what_intake_serves(http: httpx.AsyncClient):
    for script in sorted(STATIC_DIR.glob("*.js")):
        for imported in re.findall(r'from\s+"([^"]+)"', script.read_text("utf-8")):
            assert imported.startswith("./"), (script.name, imported)
            response = await http.get(f"/static/{imported.removeprefix('./')}")
            assert response.status_code == 200, imported


@pytest.mark.parametrize("path", ["/basvuru", "/gise"])
async def test_every_field_has_a_label_a_hint_and_an_error_place(
    http: httpx.AsyncClient, path: str
):
    page = Page((await http.get(path)).text)
    ids = page.ids()
    labelled = {a["for"] for a in page.all("label")}
    error_slots = {a["data-error-for"] for a in page.all() if "data-error-for" in a}
    controls = [
        a
        for tag, a in page.elements
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden"
    ]

    assert len(controls) >= 15
    for control in controls:
        assert control["id"] in labelled, control
        described = control.get("aria-describedby", "").split()
        assert f"{control['id']}-error" in described, control
        assert all(part in ids for part in described), control
    for path in [a["data-path"] for a in page.all() if a.get("data-path")]:
        # Its own place, or its group's ("location.lat" shows at "location").
        assert path in error_slots or path.partition(".")[0] in error_slots, path
    # Groups have legends; the identity group shows the identity check's error.
    assert page.all("fieldset", data_group="applicant")
    assert "applicant" in error_slots
    assert page.all("legend")


def _model_fields(path: str) -> bool:
    head, _, rest = path.partition(".")
    if head == "applicant":
        return rest in ApplicantForm.model_fields
    if head == "location":
        return rest in ("lat", "lon", "address")
    return head in ApplicationForm.model_fields


@pytest.mark.parametrize("path", ["/basvuru", "/gise"])
async def test_every_field_is_named_as_the_api_names_it_in_its_errors(
    http: httpx.AsyncClient, path: str
):
    # The server's 422 says "applicant.tckn": the page finds the field by that name.
    page = Page((await http.get(path)).text)
    paths = [a["data-path"] for a in page.all() if a.get("data-path")]

    own = {"code"}  # the verification endpoint's field, on the web form only
    assert {"applicant.tckn", "applicant.mother_maiden_initials", "district", "subject"} <= set(
        paths
    )
    assert [p for p in paths if p not in own and not _model_fields(p)] == []


async def test_the_web_form_carries_the_default_provinces_lists(http: httpx.AsyncClient):
    page = Page((await http.get("/basvuru")).text)

    districts = [a["value"] for a in page.all("option") if a.get("value") in DENIZLI.districts]
    assert sorted(districts) == sorted(DENIZLI.districts)
    assert page.all("option", value="Merkezefendi")
    heading = DENIZLI.headings[0]
    assert page.all("option", value=heading.code)
    assert page.all("option", value=heading.categories[0].code)
    assert page.all("optgroup", label=heading.name)
    embedded = json.loads(page.text["katalog"])
    assert embedded["province"] == "Denizli"
    assert embedded["headings"][0]["categories"][0]["code"] == heading.categories[0].code
    # The pickers start on "Bilmiyorum": routing decides when the citizen does not know.
    assert page.all("select", id="category_code")
    assert "Bilmiyorum" in page.text["category_code"]


async def test_the_web_form_asks_for_the_sms_code_and_says_js_is_needed(
    http: httpx.AsyncClient,
):
    html = (await http.get("/basvuru")).text
    page = Page(html)

    (code,) = page.all("input", id="code")
    assert code["autocomplete"] == "one-time-code"
    assert code["inputmode"] == "numeric"
    assert "Doğrulama kodu gönder" in page.text["kod-gonder"]
    assert "<noscript>" in html and "JavaScript" in html
    # Without the script nothing can be sent (a GET would put the TC Kimlik No in the URL).
    (submit,) = page.all("button", id="gonder")
    assert "disabled" in submit
    (summary,) = page.all(id="hata-ozeti")
    assert summary["role"] == "alert" and summary["tabindex"] == "-1"
    assert not page.all("select", id="priority"), "priority is the counter's only"


async def test_the_counter_console_offers_the_priority_marks_and_its_shortcuts(
    http: httpx.AsyncClient,
):
    page = Page((await http.get("/gise")).text)

    labels = {a["value"]: None for a in page.all("option")}
    assert {"sehit_yakini", "gazi", "engelli", "yasli"} <= set(labels)
    assert "Şehit yakını" in page.text["priority"] and "Yaşlı" in page.text["priority"]
    assert "Alt" in page.text["kisayollar"] and "Y" in page.text["kisayollar"]
    assert page.all("input", id="token", type="password")
    assert not page.all("input", id="code"), "no phone verification at the counter"
    assert "Makbuzu yazdır" in page.text["makbuz"]


async def test_the_scripts_keep_codes_and_tokens_out_of_lasting_storage():
    scripts = {path.name: path.read_text("utf-8") for path in STATIC_DIR.glob("*.js")}

    assert {"forms.js", "basvuru.js", "gise.js"} <= set(scripts)
    assert not [name for name, text in scripts.items() if "localStorage" in text]
    assert not [name for name, text in scripts.items() if "document.cookie" in text]
    assert "sessionStorage" not in scripts["basvuru.js"] + scripts["forms.js"]
    assert "sessionStorage" in scripts["gise.js"]


async def test_names_from_the_taxonomy_are_escaped(settings: Settings):
    hostile = DENIZLI.model_copy(
        update={
            "districts": [HOSTILE, "Merkezefendi"],
            "headings": [
                HeadingBrief(
                    code="ALT",
                    name=HOSTILE,
                    categories=[CategoryBrief(code="ALT-001", name=HOSTILE)],
                )
            ],
        }
    )
    app = build_app(settings)
    app.state.served = Served(hostile)
    async for http in client_for(app):
        html = (await http.get("/basvuru")).text
        assert HOSTILE not in html
        assert "&lt;script&gt;" in html
        # Inside the page's JSON the "<" is escaped too, so the script block cannot be closed.
        assert "\\u003cscript\\u003e" in html


async def test_the_page_says_when_the_lists_are_not_known_yet(settings: Settings):
    app = build_app(settings)
    app.state.served = Served(known=False)
    async for http in client_for(app):
        response = await http.get("/basvuru")
        assert response.status_code == 200
        page = Page(response.text)
        assert "henüz yüklenmedi" in page.text["katalog-durum"]
        assert "hidden" not in page.all(id="katalog-durum")[0]
        assert json.loads(page.text["katalog"]) is None

        answer = await http.get("/api/v1/catalogue", params={"province_code": 20})
        assert answer.status_code == 503
        assert answer.headers["retry-after"]
        assert "henüz yüklenmedi" in answer.json()["errors"][0]["message"]


async def test_the_catalogue_gives_a_served_provinces_lists(http: httpx.AsyncClient):
    response = await http.get("/api/v1/catalogue", params={"province_code": 20})

    assert response.status_code == 200
    catalogue = response.json()
    assert set(catalogue) == {"province_code", "province", "districts", "headings"}
    assert catalogue["province_code"] == 20
    assert catalogue["province"] == "Denizli"
    assert "Merkezefendi" in catalogue["districts"]
    heading = catalogue["headings"][0]
    assert set(heading) == {"code", "name", "categories"}
    assert set(heading["categories"][0]) == {"code", "name"}


async def test_the_catalogue_refuses_a_province_not_served(http: httpx.AsyncClient):
    response = await http.get("/api/v1/catalogue", params={"province_code": 34})

    assert response.status_code == 404
    (error,) = response.json()["errors"]
    assert error["code"] == "province_not_served"
    assert "İstanbul" in error["message"]

    bad = await http.get("/api/v1/catalogue", params={"province_code": 0})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "province_code"


async def test_the_session_route_says_who_a_token_belongs_to(
    http: httpx.AsyncClient, settings: Settings
):
    assert (await http.get("/api/v1/session")).status_code == 401
    garbage = await http.get("/api/v1/session", headers={"Authorization": "Bearer x.y.z"})
    assert garbage.status_code == 401
    assert "geçersiz" in garbage.json()["errors"][0]["message"]
    institution = bearer(settings, Role.institution, institution="DNZ-SU")
    assert (await http.get("/api/v1/session", headers=institution)).status_code == 403

    response = await http.get(
        "/api/v1/session", headers=bearer(settings, Role.officer, province=20)
    )

    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    assert answer == {"subject": "test-officer", "role": "officer", "province_code": 20}
