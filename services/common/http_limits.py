"""Limits on a request's line and headers, which uvicorn's httptools protocol does not have.

llhttp (under httptools) takes a header block of any size and uvicorn keeps all of it, so a
client could hold megabytes per connection before the app is asked anything. `LimitedHttpTools`
counts what the parser hands over and answers 414 (URL) or 431 (headers) and closes, as soon
as a limit is passed. h11, if chosen, has its own bound (`h11_max_incomplete_event_size`).
"""

from __future__ import annotations

import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The request target (path and query): the longest the services take is a report query.
MAX_URL_BYTES = 8 * 1024
# All header names and values together: an identity provider's token (a few KB) fits well.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100

_REFUSALS = {
    414: (b"414 URI Too Long", "İstek adresi çok uzun."),
    431: (b"431 Request Header Fields Too Large", "İstek başlıkları çok büyük."),
}


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request line and the headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_count = 0
        # Bytes received while a request's head (line and headers) is not complete: httptools
        # keeps a header's value until it ends, so one endless header is counted here.
        self._in_head = True
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_URL_BYTES:
            raise _Refused(414)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            raise _Refused(431)
        super().on_header(name, value)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, but a limit passed inside a parser callback (which httptools raises
        # as HttpParserCallbackError) is answered with its status rather than a plain 400.
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head and self._head_bytes > MAX_URL_BYTES + MAX_HEADER_BYTES + 4096:
                self._refuse(431)
        except httptools.HttpParserError as exc:
            refused = _refused(exc)
            if refused is not None:
                self._refuse(refused.status)
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _refuse(self, status: int) -> None:
        line, message = _REFUSALS[status]
        code = "uri_too_long" if status == 414 else "headers_too_large"
        error = {"field": None, "code": code, "message": message}
        body = json.dumps({"errors": [error]}, ensure_ascii=False).encode()
        self.transport.write(
            b"HTTP/1.1 " + line + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def _refused(exc: BaseException) -> _Refused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
