"""uvicorn's httptools protocol with the limits uvicorn lacks (``limits.RequestLimits``).

* A request body above ``serving.max_request_bytes`` is answered 413 as soon as its
  ``Content-Length`` header says so, before any of it is read, or as soon as a chunked body grows
  past it.
* The request line and headers must arrive within ``serving.header_timeout_seconds`` (counted from
  the connection, or from the first byte of a further request on a kept-alive connection) and stay
  below :data:`MAX_HEADER_BYTES` (431); uvicorn has no header timeout, so a slow client held its
  connection for ever. The body must arrive within ``serving.body_timeout_seconds`` after the
  headers (408 either way). Idle kept-alive connections close after ``serving.keep_alive_seconds``
  (uvicorn's own timer).
* Each refusal is one warning line and a short JSON answer with ``connection: close``; a request the
  application is already handling sees a disconnect, and what was buffered of its body is released.
* After a request of :data:`limits.TRIM_AFTER_BYTES` or more, freed heap goes back to the OS.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from workloads.serving.limits import TRIM_AFTER_BYTES, RequestLimits, release_memory_soon

log = logging.getLogger("workloads.serving")

# Request line + headers of one request; KServe clients send well under 1 KiB.
MAX_HEADER_BYTES = 64 * 1024
# After a 413/431 the connection reads and drops what the client still sends for this long, so a
# client that writes its whole body before reading sees the answer instead of a reset connection.
LINGER_SECONDS = 2.0
# Set in the ASGI scope of a request refused while the application handles it (it logs nothing more).
REFUSED_SCOPE_KEY = "bmc.refused"


def guarded_http_protocol(limits: RequestLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class bound to ``limits`` (uvicorn.Config(http=...))."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = RequestLimits.defaults()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._guard_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._header_bytes = 0
        self._body_bytes = 0
        self._request_bytes = 0
        super().connection_made(transport)
        self._arm("headers", self.limits.header_timeout_seconds, "serving.header_timeout_seconds")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped, never parsed or buffered
        super().data_received(data)

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._body_bytes = 0
        if self._guard_timer is None:
            self._arm("headers", self.limits.header_timeout_seconds, "serving.header_timeout_seconds")

    def on_url(self, url: bytes) -> None:
        if self._count_header_bytes(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count_header_bytes(len(name) + len(value)):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        declared = _content_length(self.headers)
        if declared is not None and declared > self.limits.max_request_bytes:
            self._refuse(
                413,
                f"the request body is {declared} bytes; this server accepts at most "
                f"{self.limits.max_request_bytes} (serving.max_request_bytes)",
            )
            return
        super().on_headers_complete()
        if declared != 0 and not self._refused:
            self._arm("body", self.limits.body_timeout_seconds, "serving.body_timeout_seconds")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_request_bytes:
            self._refuse(
                413,
                f"the (chunked) request body exceeds {self.limits.max_request_bytes} bytes "
                "(serving.max_request_bytes)",
            )
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._request_bytes = self._body_bytes
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._request_bytes >= TRIM_AFTER_BYTES:
            release_memory_soon()
        self._request_bytes = 0

    # The guard
    def _count_header_bytes(self, size: int) -> bool:
        if self._refused:
            return False
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"the request line and headers exceed {MAX_HEADER_BYTES} bytes")
            return False
        return True

    def _arm(self, part: str, seconds: float, key: str) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._guard_timer = loop.call_later(seconds, self._timed_out, part, seconds, key)

    def _disarm(self) -> None:
        timer = getattr(self, "_guard_timer", None)
        if timer is not None:
            timer.cancel()
            self._guard_timer = None

    def _timed_out(self, part: str, seconds: float, key: str) -> None:
        self._guard_timer = None
        if self.transport.is_closing():
            return
        self._refuse(408, f"the request {part} did not arrive within {seconds:g} s ({key})")

    def _refuse(self, status: int, reason: str) -> None:
        """One warning line, a short response if none has started, and the connection closed.

        After a 413 or 431 the answer is followed by EOF and the connection lingers for
        :data:`LINGER_SECONDS`, dropping whatever still arrives, then closes.
        """
        self._refused = True
        self._disarm()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("rejected a REST request from %s (%d): %s", client, status, reason)
        # uvicorn types it as always set; it is None until the connection's first request.
        cycle: RequestResponseCycle | None = getattr(self, "cycle", None)
        # Before on_headers_complete, self.cycle is the connection's previous request (or None).
        busy = False
        if cycle is not None and cycle.scope is self.scope:
            busy = cycle.response_started
            if not cycle.response_complete:
                # The application sees a disconnect; what it had buffered is released.
                cycle.disconnected = True
                cycle.scope[REFUSED_SCOPE_KEY] = True  # type: ignore[literal-required]
                cycle.body = bytearray()
                cycle.message_event.set()
        elif cycle is not None:
            busy = not cycle.response_complete  # a pipelined request's answer is under way
        if not busy and not self.transport.is_closing():
            content = b'{"error": %s}' % _json_string(reason)
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(content), content)
            )
            if status != 408 and self.transport.can_write_eof():
                self.transport.write_eof()
                self.flow.resume_reading()
                asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
                return
        self.transport.close()


_REASONS = {408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


def _json_string(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "replace") + b'"'


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the parser answers 400 itself
    return None
