"""The page behind an informational e-mail's unsubscribe link: `/eposta/ayril?t=<token>`.

GET shows a short Turkish page with one button, and changes nothing (mail scanners open links
on their own; they must not unsubscribe anyone). POST records the opt-out: the page's button,
or the mail client's one-click unsubscribe (RFC 8058, `List-Unsubscribe=One-Click`). The token
names the address only by its keyed blind index, signed, so the stored opt-out never holds the
address and nobody can unsubscribe another person (docs/notifications.md).
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from services.common.events import utcnow
from services.common.middleware import FORM, MULTIPART, PLAIN_PAGE_POLICY
from services.notification.api import get_notifier
from services.notification.handlers import Notifier
from services.notification.metrics import OPTOUTS
from services.notification.policy import optout_index

router = APIRouter(tags=["e-posta tercihi"])

PATH = "/eposta/ayril"
HEADERS = {
    "Content-Security-Policy": PLAIN_PAGE_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!DOCTYPE html>\n<html lang="tr">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Açık Kapı — {escape(title)}</title></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}\n"
        "<p><small>Açık Kapı başvuru sistemi</small></p>\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


_INVALID = (
    "<p>Bu bağlantı geçersiz veya eksik kopyalanmış. Lütfen e-postadaki bağlantının tamamını "
    "kullanın.</p>"
)
_KEPT_ANYWAY = (
    "<p>Başvurularınıza verilen yanıtlar, yasal bildirim oldukları için (3071 ve 4982 sayılı "
    "Kanunlar) bu tercihten bağımsız olarak gönderilmeye devam eder.</p>"
)


@router.get(
    PATH, response_class=HTMLResponse, summary="Bilgilendirme e-postalarından ayrılma sayfası"
)
async def optout_page(
    notifier: Annotated[Notifier, Depends(get_notifier)],
    t: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    if optout_index(notifier.optout_secret, t) is None:
        return _page("Bağlantı geçersiz", _INVALID, 400)
    action = f"{PATH}?t={escape(t)}"
    return _page(
        "Bilgilendirme e-postalarından ayrılma",
        "<p>Başvurunuzun alındığını bildiren bilgilendirme e-postalarını bu adrese artık "
        "almak istemiyorsanız aşağıdaki düğmeye basın.</p>\n"
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="onay" value="evet">'
        '<button type="submit">E-postalardan ayrıl</button></form>\n' + _KEPT_ANYWAY,
    )


@router.post(
    PATH,
    response_class=HTMLResponse,
    summary="Bilgilendirme e-postalarından ayrıl (sayfadaki düğme veya RFC 8058 tek tık)",
    # The page's form, or the mail client's one-click POST (RFC 8058: either form encoding).
    openapi_extra={
        "requestBody": {
            "content": {
                FORM: {"schema": {"type": "object"}},
                MULTIPART: {"schema": {"type": "object"}},
            }
        }
    },
)
async def optout(
    request: Request,
    notifier: Annotated[Notifier, Depends(get_notifier)],
    t: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    index = optout_index(notifier.optout_secret, t)
    if index is None:
        return _page("Bağlantı geçersiz", _INVALID, 400)
    body = await request.body()
    via = "one_click" if b"List-Unsubscribe=One-Click" in body else "page"
    if await notifier.store.opt_out(index, via, utcnow()):
        OPTOUTS.labels(via).inc()
    return _page(
        "E-postalardan ayrıldınız",
        "<p>Bu adrese artık başvurunuzun alındığını bildiren bilgilendirme e-postaları "
        "gönderilmeyecek.</p>\n" + _KEPT_ANYWAY,
    )
