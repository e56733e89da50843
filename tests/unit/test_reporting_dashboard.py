"""Reporting's pages through FastAPI's TestClient: the login and its cookie, the province scope
on the dashboards (the real access rules), the public summary that shows only aggregates, and
pages that are charts drawn on the server, with no script and nothing from another host."""

from __future__ import annotations

import re
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.auth import Role, issue_token
from services.common.settings import Settings
from services.reporting.cells import Scope
from services.reporting.dashboard import (
    ReportSource,
    build_pages,
    chronic_view,
    export_links,
    public_summary,
)
from services.reporting.exports import TABLES
from services.reporting.query import Period
from services.reporting.session import COOKIE, safe_next

SETTINGS = Settings(
    jwt_secret="birim-testi-gizli-anahtar-en-az-32-bayt!!", default_province_code=20
)
OVERDUE_NUMBER = "20-2026-0000123-7"
EXAMPLE_TEXT = "Sümer Mahallesi 1453. Sokak'ta kanalizasyon üç haftadır taşıyor, koku dayanılmaz."


def _row(total: int, answered: int, on_time: float | None, **key: Any) -> dict[str, Any]:
    olumlu = answered // 2
    olumsuz = answered // 4
    return {
        **key,
        "total": total,
        "answered": answered,
        "open": total - answered,
        "olumlu": olumlu,
        "olumsuz": olumsuz,
        "kismen_olumlu": answered - olumlu - olumsuz,
        "overdue": max(0, (total - answered) // 3),
        "on_time_ratio": on_time,
        "mean_response_business_days": 3.4 if answered else None,
        "median_response_business_days": 3 if answered else None,
        "ratings": {
            "count": answered // 5,
            "average": 4.1 if answered >= 5 else None,
            "distribution": {"1": 0, "2": 1, "3": 2, "4": 3, "5": max(0, answered // 5 - 6)},
        },
    }


def report_of(scope: Scope, period: Period) -> dict[str, Any]:
    """A report in the shape of docs (report-shape.md), Denizli-like: 1.234 applications."""
    institutions = [
        ("DESKI", "Denizli Büyükşehir Belediyesi DESKİ Genel Müdürlüğü", "SU_IDARESI", 412, 390),
        ("MERKEZEFENDI-BLD", "Merkezefendi Belediyesi", "BELEDIYE", 301, 280),
        ("PAMUKKALE-BLD", "Pamukkale Belediyesi", "BELEDIYE", 250, 230),
        ("ADM", "ADM Elektrik Dağıtım A.Ş.", "ELEKTRIK", 160, 150),
        ("DENIZLI-IL-MEB", "Denizli İl Milli Eğitim Müdürlüğü", "MEB", 111, 100),
    ]
    on_time = {"DESKI": 0.97, "MERKEZEFENDI-BLD": 0.88, "PAMUKKALE-BLD": 0.71, "ADM": 0.93}
    by_institution = [
        _row(t, a, on_time.get(code), institution_code=code, institution_name=name, kind=kind)
        for code, name, kind, t, a in institutions
    ]
    weekly = []
    monday = date(2026, 1, 5)
    for i in range(10):
        start = monday + timedelta(weeks=i)
        received = 100 + 7 * i
        weekly.append(
            {
                "period": f"{start.isocalendar()[0]}-W{start.isocalendar()[1]:02d}",
                "start": start.isoformat(),
                "received": received,
                "answered": received - 6,
                "overdue": i % 3,
                "on_time_ratio": None if i == 4 else 0.9 - i / 100,
            }
        )
    monthly = [
        {
            "period": m,
            "start": f"{m}-01",
            "received": r,
            "answered": r - 10,
            "overdue": 3,
            "on_time_ratio": ratio,
        }
        for m, r, ratio in (("2026-01", 430, 0.95), ("2026-02", 450, 0.91), ("2026-03", 354, 0.86))
    ]
    return {
        "scope": {
            "province_code": scope.province_code,
            "province_name": {20: "Denizli", 35: "İzmir"}.get(scope.province_code, "?"),
            "district": None if scope.district == "*" else scope.district,
            "institution_code": None if scope.institution == "*" else scope.institution,
            "institution_name": None,
            "from": period.start.isoformat() if period.start else None,
            "to": period.end.isoformat() if period.end else None,
        },
        "generated_at": "2026-04-01T09:30:00+00:00",
        "as_of": "2026-04-01T09:29:58+00:00",
        **{k: v for k, v in _row(1234, 1150, 0.934).items() if k != "ratings"},
        "outcomes": {"olumlu": 575, "olumsuz": 287, "kismen_olumlu": 288},
        "ratings": {
            "count": 230,
            "average": 4.12,
            "distribution": {"1": 10, "2": 15, "3": 30, "4": 75, "5": 100},
        },
        "by_institution": by_institution,
        "by_heading": [
            _row(600, 560, 0.95, heading_code="ALT", heading_name="Altyapı ve Su"),
            _row(400, 380, 0.9, heading_code="ULS", heading_name="Ulaşım ve Yol"),
            _row(234, 210, None, heading_code=None, heading_name=None),
        ],
        "by_category": [
            _row(
                300,
                290,
                0.96,
                category_code="ALT-001",
                category_name="İçme suyu kesintisi",
                heading_code="ALT",
                heading_name="Altyapı ve Su",
            ),
        ],
        "by_channel": [
            _row(700, 650, 0.93, channel="web"),
            _row(300, 290, 0.94, channel="edevlet"),
            _row(234, 210, 0.9, channel="counter"),
        ],
        "by_type": [
            _row(900, 850, 0.93, application_type="sikayet"),
            _row(334, 300, 0.95, application_type="istek"),
        ],
        "by_district": [
            _row(500, 470, 0.94, district="Merkezefendi"),
            _row(450, 420, 0.93, district="Pamukkale"),
            _row(200, 190, 0.9, district="Çivril"),
            _row(84, 70, 0.85, district="Acıpayam"),
        ],
        "by_status": [{"status": "answered", "total": 1150}, {"status": "opened", "total": 84}],
        "trends": {"weekly": weekly, "monthly": monthly},
        "institution_ranking": [
            {
                "rank": i,
                "institution_code": code,
                "institution_name": name,
                "kind": None,
                "judged": 100 + i,
                "on_time_ratio": on_time[code],
                "total": 120 + i,
            }
            for i, (code, name) in enumerate(
                (
                    ("DESKI", "DESKİ"),
                    ("ADM", "ADM Elektrik"),
                    ("MERKEZEFENDI-BLD", "Merkezefendi Belediyesi"),
                    ("PAMUKKALE-BLD", "Pamukkale Belediyesi"),
                ),
                start=1,
            )
        ],
        "overdue_list": [
            {
                "application_number": OVERDUE_NUMBER,
                "institution_code": "PAMUKKALE-BLD",
                "institution_name": "Pamukkale Belediyesi",
                "category_name": "Yol bakımı",
                "district": "Pamukkale",
                "received_at": "2026-03-02T07:00:00+00:00",
                "deadline_at": "2026-03-11T20:59:59+00:00",
            }
        ],
        "overdue_list_total": 12,
        # What a careless source might add: the public summary must not show it.
        "examples": [EXAMPLE_TEXT],
    }


PROBLEM = {
    "id": "20|Merkezefendi|Sümer|ALT",
    "district": "Merkezefendi",
    "neighbourhood": "Sümer Mahallesi",
    "heading_name": "Altyapı ve Su",
    "institution_name": "DESKİ Genel Müdürlüğü",
    "count": 14,
    "citizens": 11,
    "first_at": "2026-01-06T08:00:00+00:00",
    "last_at": "2026-03-10T12:00:00+00:00",
    "trend": "artıyor",
    "weekly": [["2026-01-05", 1], ["2026-01-12", 2], ["2026-01-19", 1], ["2026-01-26", 4]],
    "examples": [EXAMPLE_TEXT],
    "keywords": ["kanalizasyon", "taşma", "koku"],
}


class FakeSource:
    """The report source the pages read, recording what they asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[Scope, Period]] = []
        self.chronic_asked: list[Scope] = []

    async def report(self, scope: Scope, period: Period) -> dict[str, Any]:
        self.asked.append((scope, period))
        return report_of(scope, period)

    async def chronic(self, scope: Scope) -> list[dict[str, Any]]:
        self.chronic_asked.append(scope)
        return [PROBLEM]


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def client(source: FakeSource) -> TestClient:
    typed: ReportSource = source
    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=SETTINGS)
    app.include_router(build_pages(typed, SETTINGS))
    return TestClient(app, base_url="http://pano.test", follow_redirects=False)


def token(role: Role = Role.supervisor, **claims: Any) -> str:
    return issue_token(SETTINGS, subject=f"test-{role.value}", role=role, **claims)


def logged_in(client: TestClient, value: str) -> TestClient:
    client.cookies.set(COOKIE, value)
    return client


SAME_ORIGIN = {"Origin": "http://pano.test"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def login_csrf(client: TestClient) -> dict[str, str]:
    """The login form's CSRF field, as a browser gets it: the page sets the nonce cookie."""
    found = CSRF.search(client.get("/giris").text)
    assert found is not None
    return {"csrf": found.group(1)}


def logout_csrf(client: TestClient) -> dict[str, str]:
    """The logout form's CSRF field on a page of the logged-in session."""
    found = CSRF.search(client.get("/pano").text)
    assert found is not None
    return {"csrf": found.group(1)}


# --- the login ---------------------------------------------------------------------------------


def test_the_login_form_is_turkish_and_shows_the_local_token_command(client: TestClient) -> None:
    page = client.get("/giris?next=/pano/kronik")
    assert page.status_code == 200
    assert "Oturum anahtarı" in page.text and "Giriş yap" in page.text
    assert "python -m services.common.devtoken --role supervisor --province 20" in page.text
    assert 'name="next" value="/pano/kronik"' in page.text
    assert page.headers["cache-control"] == "no-store"


def test_a_good_token_sets_a_strict_http_only_cookie_for_its_remaining_life(
    client: TestClient,
) -> None:
    value = issue_token(
        SETTINGS, subject="ayse", role=Role.supervisor, province=20, ttl=timedelta(hours=2)
    )
    answer = client.post(
        "/giris",
        data={**login_csrf(client), "token": value, "next": "/pano?district=Pamukkale"},
        headers=SAME_ORIGIN,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/pano?district=Pamukkale"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={value};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    max_age = re.search(r"Max-Age=(\d+)", cookie)
    assert max_age is not None and 7190 <= int(max_age.group(1)) <= 7200
    # and the cookie opens the dashboard
    assert client.get("/pano").status_code == 200


def test_the_cookie_is_secure_when_the_setting_says_so(source: FakeSource) -> None:
    settings = SETTINGS.model_copy(update={"session_cookie_secure": True})
    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=settings)
    app.include_router(build_pages(source, settings))
    client = TestClient(app, base_url="https://pano.test", follow_redirects=False)
    answer = client.post(
        "/giris",
        data={**login_csrf(client), "token": token()},
        headers={"Origin": "https://pano.test"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/pano"
    assert "Secure" in answer.headers["set-cookie"]


@pytest.mark.parametrize(
    "value",
    ["not-a-token", issue_token(SETTINGS, subject="x", role=Role.admin, ttl=timedelta(seconds=-5))],
    ids=["garbage", "expired"],
)
def test_a_bad_token_is_refused_in_turkish_without_a_cookie(client: TestClient, value: str) -> None:
    answer = client.post(
        "/giris", data={**login_csrf(client), "token": value, "next": "/pano"}, headers=SAME_ORIGIN
    )
    assert answer.status_code == 401
    assert "Oturum anahtarı geçersiz ya da süresi dolmuş" in answer.text
    assert "set-cookie" not in answer.headers
    assert 'aria-invalid="true"' in answer.text


def test_a_token_signed_with_another_secret_is_refused(client: TestClient) -> None:
    other = Settings(jwt_secret="baska-bir-gizli-anahtar-en-az-32-bayt-uzun!")
    value = issue_token(other, subject="x", role=Role.admin)
    assert (
        client.post(
            "/giris", data={**login_csrf(client), "token": value}, headers=SAME_ORIGIN
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    "target",
    [
        "https://kotu.example/pano",
        "//kotu.example/pano",
        "/\\kotu.example",
        "\\\\kotu.example",
        "javascript:alert(1)",
        "pano",
        "/pano\r\nSet-Cookie: x=1",
    ],
)
def test_the_login_never_sends_a_browser_to_another_host(client: TestClient, target: str) -> None:
    answer = client.post(
        "/giris", data={**login_csrf(client), "token": token(), "next": target}, headers=SAME_ORIGIN
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/pano"
    assert safe_next(target) == "/pano"
    assert safe_next("/pano/kronik?district=%C3%87ivril") == "/pano/kronik?district=%C3%87ivril"


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://kotu.example"}, {"Origin": "null"}, {"Referer": "https://kotu.example/x"}],
)
def test_a_login_posted_from_another_site_is_refused(
    client: TestClient, headers: dict[str, str]
) -> None:
    answer = client.post("/giris", data={**login_csrf(client), "token": token()}, headers=headers)
    assert answer.status_code == 403
    assert "başka bir siteden" in answer.text
    assert "set-cookie" not in answer.headers


def test_a_login_posted_from_this_site_by_referer_is_taken(client: TestClient) -> None:
    headers = {"Referer": "http://pano.test/giris?next=/pano"}
    assert (
        client.post(
            "/giris", data={**login_csrf(client), "token": token()}, headers=headers
        ).status_code
        == 303
    )


def test_logout_clears_the_cookie(client: TestClient) -> None:
    client.post("/giris", data={**login_csrf(client), "token": token()}, headers=SAME_ORIGIN)
    assert client.get("/pano").status_code == 200
    answer = client.post("/cikis", data=logout_csrf(client), headers=SAME_ORIGIN)
    assert answer.status_code == 303 and answer.headers["location"] == "/giris"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f'{COOKIE}="";') and "Max-Age=0" in cookie
    assert client.get("/pano").status_code == 303


def test_a_login_without_the_forms_csrf_token_is_refused(client: TestClient) -> None:
    # No token, a made-up one, and one bound to another browser's login nonce.
    other = TestClient(client.app, base_url="http://pano.test", follow_redirects=False)
    for extra in ({}, {"csrf": "0" * 64}, login_csrf(other)):
        client.get("/giris")  # this browser has its own nonce
        answer = client.post("/giris", data={"token": token(), **extra}, headers=SAME_ORIGIN)
        assert answer.status_code == 403, extra
        assert "güvenlik anahtarı eksik ya da geçersiz" in answer.text
        assert COOKIE not in answer.headers.get("set-cookie", "")
    # Without the nonce cookie the token alone is not enough either.
    stolen = login_csrf(client)
    client.cookies.clear()
    answer = client.post("/giris", data={"token": token(), **stolen}, headers=SAME_ORIGIN)
    assert answer.status_code == 403


def test_a_logout_without_the_sessions_csrf_token_is_refused(client: TestClient) -> None:
    client.post("/giris", data={**login_csrf(client), "token": token()}, headers=SAME_ORIGIN)
    for extra in ({}, {"csrf": "0" * 64}):
        answer = client.post("/cikis", data=extra, headers=SAME_ORIGIN)
        assert answer.status_code == 403
        assert "güvenlik anahtarı eksik ya da geçersiz" in answer.text
        assert client.get("/pano").status_code == 200  # still logged in
    # A token of another session does not end this one.
    other = TestClient(client.app, base_url="http://pano.test", follow_redirects=False)
    other.post(
        "/giris", data={**login_csrf(other), "token": token(Role.admin)}, headers=SAME_ORIGIN
    )
    answer = client.post("/cikis", data=logout_csrf(other), headers=SAME_ORIGIN)
    assert answer.status_code == 403


def test_citizen_html_on_the_chronic_page_is_shown_as_text(source: FakeSource) -> None:
    """The chronic page quotes citizens' texts and their words: HTML in them stays text."""
    payload = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'
    hostile = {
        **PROBLEM,
        "examples": [f"Kanalizasyon taşıyor {payload}"],
        "keywords": [payload],
        "neighbourhood": f"Sümer {payload}",
    }

    class Hostile(FakeSource):
        async def chronic(self, scope: Scope) -> list[dict[str, Any]]:
            return [hostile]

    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=SETTINGS)
    app.include_router(build_pages(Hostile(), SETTINGS))
    browser = logged_in(TestClient(app, base_url="http://pano.test"), token())
    page = browser.get("/pano/kronik")
    assert page.status_code == 200
    assert "<script>window" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in page.text


# --- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_without_a_login_goes_to_the_login_and_back(client: TestClient) -> None:
    answer = client.get("/pano?district=%C3%87ivril&from=2026-01-01")
    assert answer.status_code == 303
    target = answer.headers["location"]
    assert target == "/giris?next=" + quote("/pano?district=%C3%87ivril&from=2026-01-01", safe="")
    assert parse_qs(urlsplit(target).query)["next"] == [
        "/pano?district=%C3%87ivril&from=2026-01-01"
    ]
    assert client.get("/pano/kronik").status_code == 303


def test_an_expired_or_forged_cookie_is_no_login(client: TestClient) -> None:
    expired = issue_token(SETTINGS, subject="x", role=Role.admin, ttl=timedelta(seconds=-1))
    assert logged_in(client, expired).get("/pano").status_code == 303
    assert logged_in(client, "forged").get("/pano").status_code == 303


def test_a_bearer_header_opens_the_dashboard_too(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {token(province=20)}"}
    assert client.get("/pano", headers=headers).status_code == 200


def test_a_supervisor_of_izmir_may_not_read_denizli(client: TestClient, source: FakeSource) -> None:
    logged_in(client, token(Role.supervisor, province=35))
    answer = client.get("/pano?province_code=20")
    assert answer.status_code == 403
    assert "Yalnızca kendi ilinizin raporlarını görebilirsiniz." in answer.text
    assert source.asked == []
    assert client.get("/pano/kronik?province_code=20").status_code == 403
    assert source.chronic_asked == []
    # Their own province is fine, and is what they see without asking.
    assert client.get("/pano").status_code == 200
    assert source.asked[0][0] == Scope(35)


def test_an_institution_sees_only_itself(client: TestClient, source: FakeSource) -> None:
    logged_in(client, token(Role.institution, institution="DESKI", province=20))
    answer = client.get("/pano?institution_code=ADM")
    assert answer.status_code == 403
    assert "Yalnızca kendi kurumunuzun" in answer.text
    page = client.get("/pano?district=Pamukkale")
    assert page.status_code == 200
    assert source.asked[0][0] == Scope(20, "Pamukkale", "DESKI")
    assert '<select id="institution_code"' not in page.text  # a fixed name, no select
    assert "<b>DESKI</b>" in page.text


def test_the_dashboard_draws_charts_filters_tables_and_export_links(
    client: TestClient, source: FakeSource
) -> None:
    logged_in(client, token(Role.supervisor, province=20))
    page = client.get(
        "/pano?district=Pamukkale&institution_code=DESKI&from=2026-01-01&to=2026-03-31"
    )
    assert page.status_code == 200
    html = page.text
    scope = Scope(20, "Pamukkale", "DESKI")
    period = Period(date(2026, 1, 1), date(2026, 3, 31))
    assert source.asked[0] == (scope, period)
    # The selects list the whole province's districts and institutions, the chosen selected.
    assert source.asked[1] == (Scope(20), period)
    assert '<option value="Pamukkale" selected>Pamukkale</option>' in html
    assert '<option value="Çivril">Çivril</option>' in html
    assert '<option value="DESKI" selected>' in html
    assert '<select id="province_code"' not in html and "<b>Denizli</b>" in html  # fixed
    # Headline figures in Turkish number formats, and the charts.
    assert "1.234" in html and "%93,4" in html and "4,12" in html
    assert "Dönem: 01.01.2026 – 31.03.2026" in html
    assert html.count("<svg") == 10
    for title in (
        "Sonuç dağılımı (yanıtlanan başvurular)",
        "Haftalara göre gelen ve yanıtlanan başvurular",
        "Aylara göre gelen ve yanıtlanan başvurular",
        "Kurumlar: süresinde yanıt payına göre sıralama",
        "İlçelere göre başvurular",
        "Vatandaşların yanıtlara verdiği puanlar",
    ):
        assert f'aria-label="{title}"' in html
    # The ranking colours each institution by its band: 71 % is red, 97 % green.
    assert "%71,0 · 104 yanıt" in html and "#c62828" in html and "#2e7d32" in html
    # Tables where numbers are wanted: all institutions, the overdue list.
    assert "Denizli Büyükşehir Belediyesi DESKİ Genel Müdürlüğü" in html
    assert OVERDUE_NUMBER in html and "12 başvuru" in html
    # Exports with the same filters.
    links = export_links(scope, period)
    assert links["xlsx"].replace("&", "&amp;") in html
    assert links["csv:by_institution"].replace("&", "&amp;") in html
    assert 'action="/api/v1/reports/monthly.pdf"' in html and 'value="2026-03"' in html


def test_the_dashboard_lists_the_rated_institutions_most_rated_first(
    client: TestClient, source: FakeSource
) -> None:
    logged_in(client, token(province=20))
    html = client.get("/pano").text
    section = html[html.index('id="memnuniyet"') :]
    section = section[: section.index("</section>")]
    assert "5 — Çok memnunum" in section and "1 — Hiç memnun değilim" in section
    # DESKİ 78 ratings before Merkezefendi's 56; averages with a Turkish comma.
    assert section.index("DESKİ Genel Müdürlüğü") < section.index("Merkezefendi Belediyesi")
    assert "<td>78</td><td>4,10</td>" in section


def test_the_dashboard_says_so_when_nothing_was_rated(source: FakeSource) -> None:
    class Unrated(FakeSource):
        async def report(self, scope: Scope, period: Period) -> dict[str, Any]:
            report = await super().report(scope, period)
            for row in report["by_institution"]:
                row["ratings"] = {"count": 0, "average": None, "distribution": {}}
            return report

    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=SETTINGS)
    app.include_router(build_pages(Unrated(), SETTINGS))
    client = logged_in(TestClient(app, follow_redirects=False), token(province=20))
    assert "Bu dönemde puanlanan yanıt yok." in client.get("/pano").text


def test_the_dashboard_shows_a_turkish_message_for_a_bad_period(client: TestClient) -> None:
    logged_in(client, token(Role.admin))
    page = client.get("/pano?from=2026-03-01&to=2026-01-01")
    assert page.status_code == 422
    assert "Başlangıç tarihi (from) bitiş tarihinden (to) sonra olamaz." in page.text
    assert "<svg" not in page.text
    assert '<select id="province_code"' in page.text  # an admin without a province picks one


def test_an_admin_without_a_province_reads_any(client: TestClient, source: FakeSource) -> None:
    logged_in(client, token(Role.admin))
    page = client.get("/pano?province_code=35")
    assert page.status_code == 200
    assert source.asked[0][0] == Scope(35)
    assert '<option value="35" selected>35 · İzmir</option>' in page.text


def test_export_links_carry_the_filters() -> None:
    scope = Scope(20, "Çivril", "DESKI")
    links = export_links(scope, Period(date(2026, 2, 1), date(2026, 2, 28)))
    assert set(links) == {f"csv:{code}" for code in TABLES} | {"xlsx", "pdf"}
    csv = urlsplit(links["csv:by_district"])
    assert csv.path == "/api/v1/reports/export.csv"
    assert parse_qs(csv.query) == {
        "table": ["by_district"],
        "province_code": ["20"],
        "district": ["Çivril"],
        "institution_code": ["DESKI"],
        "from": ["2026-02-01"],
        "to": ["2026-02-28"],
    }
    pdf = urlsplit(links["pdf"])
    assert pdf.path == "/api/v1/reports/monthly.pdf"
    assert parse_qs(pdf.query)["month"] == ["2026-02"] and "from" not in parse_qs(pdf.query)
    # With an open period the PDF is the last whole month.
    open_links = export_links(Scope(20), Period(), today=date(2026, 4, 15))
    assert parse_qs(urlsplit(open_links["pdf"]).query)["month"] == ["2026-03"]
    assert parse_qs(urlsplit(open_links["xlsx"]).query) == {"province_code": ["20"]}


# --- chronic problems --------------------------------------------------------------------------


def test_the_chronic_page_lists_each_problem_with_a_sparkline(
    client: TestClient, source: FakeSource
) -> None:
    logged_in(client, token(Role.supervisor, province=20))
    page = client.get("/pano/kronik?district=Merkezefendi")
    assert page.status_code == 200
    assert source.chronic_asked == [Scope(20, "Merkezefendi")]
    html = page.text
    assert "Merkezefendi / Sümer Mahallesi — Altyapı ve Su" in html
    assert "<dd>14</dd>" in html and "<dd>11</dd>" in html
    assert "06.01.2026" in html and "10.03.2026" in html
    assert "↑ Artıyor" in html and "DESKİ Genel Müdürlüğü" in html
    assert "kanalizasyon" in html and "Sümer Mahallesi 1453. Sokak" in html
    assert 'aria-label="Haftalık başvuru sayısı: 1, 2, 1, 4"' in html
    assert html.count("<svg") == 1


def test_a_sparkline_follows_the_weekly_counts() -> None:
    view = chronic_view(PROBLEM)
    line = re.search(r'<polyline points="([^"]+)"', str(view["spark"]))
    assert line is not None
    points = line.group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert len(ys) == 4
    assert ys[3] < ys[1] < ys[0]  # 4 is highest (smallest y), then 2, then 1
    assert ys[0] == ys[2]


# --- the public summary ------------------------------------------------------------------------


def test_the_public_summary_needs_no_login_and_shows_only_aggregates(
    client: TestClient, source: FakeSource
) -> None:
    page = client.get("/rapor")
    assert page.status_code == 200
    assert source.asked == [(Scope(20), Period())]
    html = page.text
    assert "Vatandaş başvuruları: Denizli" in html
    assert "1.234" in html and "575" in html and "%93,4" in html
    assert html.count("<svg") == 5
    # None of what the source also returned: application numbers, texts, institutions.
    assert OVERDUE_NUMBER not in html
    assert not re.search(r"\d{2}-\d{4}-\d{7}-\d", html)
    assert "Sümer Mahallesi" not in html and "kanalizasyon" not in html
    assert "DESKİ" not in html and "Pamukkale Belediyesi" not in html
    assert page.headers["cache-control"].startswith("public")


def test_the_public_summary_ignores_a_session_cookie(client: TestClient) -> None:
    anonymous = client.get("/rapor?province_code=20").text
    logged_in(client, token(Role.admin))
    assert client.get("/rapor?province_code=20").text == anonymous


def test_the_public_summary_narrows_to_a_known_district(
    client: TestClient, source: FakeSource
) -> None:
    page = client.get("/rapor?province_code=20&district=%C3%87ivril&from=2026-01-01")
    assert page.status_code == 200
    period = Period(date(2026, 1, 1), None)
    assert source.asked == [(Scope(20), period), (Scope(20, "Çivril"), period)]
    assert '<option value="Çivril" selected>Çivril</option>' in page.text
    assert "Dönem: 01.01.2026 ve sonrası" in page.text
    # The district's figures, and beside them every district of the province.
    districts = re.search(r'<svg[^>]*aria-label="İlçelere göre başvurular".*?</svg>', page.text)
    assert districts is not None and "Merkezefendi" in districts.group()
    unknown = client.get("/rapor?district=Atlantis")
    assert unknown.status_code == 422
    assert "başvuru alınmış bir ilçe yok" in unknown.text
    assert client.get("/rapor?province_code=99").status_code == 422


def test_the_public_summary_copies_only_counts() -> None:
    summary = public_summary(report_of(Scope(20), Period()))
    assert "overdue_list" not in summary and "examples" not in summary
    assert "by_institution" not in summary and "institution_ranking" not in summary
    assert set(summary["by_district"][0]) == {
        "district", "total", "answered", "open", "olumlu", "olumsuz", "kismen_olumlu",
        "overdue", "on_time_ratio", "mean_response_business_days",
        "median_response_business_days",
    }  # fmt: skip


# --- every page --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/giris", "/pano", "/pano/kronik", "/rapor"])
def test_pages_run_no_script_and_load_nothing_from_another_host(
    client: TestClient, path: str
) -> None:
    logged_in(client, token(Role.supervisor, province=20))
    page = client.get(path)
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html.lower()
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert ' style="' not in html  # the CSP allows only the service's own style sheet
    # The only absolute URL is the SVG namespace, which is a name, not a request.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg"}
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert '<html lang="tr">' in html
    assert '<link rel="stylesheet" href="/static/pano.css">' in html


def test_the_style_sheet_is_served_by_reporting(client: TestClient) -> None:
    sheet = client.get("/static/pano.css")
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith("text/css")
    assert "@media print" in sheet.text and "svg.chart" in sheet.text
    assert "http" not in sheet.text  # no web font, no remote image


def test_names_are_escaped(source: FakeSource) -> None:
    class Hostile(FakeSource):
        async def report(self, scope: Scope, period: Period) -> dict[str, Any]:
            report = await super().report(scope, period)
            report["by_institution"][0]["institution_name"] = "<script>alert(1)</script>"
            report["by_district"][0]["district"] = '"><img src=x>'
            return report

    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=SETTINGS)
    app.include_router(build_pages(Hostile(), SETTINGS))
    client = logged_in(TestClient(app, follow_redirects=False), token(province=20))
    for path in ("/pano", "/rapor"):
        html = client.get(path).text
        assert "<script>" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in client.get("/pano").text


def test_generated_at_is_read_on_istanbul_time(client: TestClient) -> None:
    logged_in(client, token(province=20))
    html = client.get("/pano").text
    assert "01.04.2026 12:30" in html  # the fixture's 09:30 UTC
