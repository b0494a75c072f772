"""uvicorn's httptools protocol with a deadline on every wait for the client."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .encoding import dumps
from .settings import Settings


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline on every wait for the client.

    uvicorn bounds only the idle time after an answer (its keep-alive timeout): a client held a connection, and
    what the server holds for it, for ever by connecting and sending nothing, by sending a request head or body
    a byte at a time, or by not reading its answers (340 such sockets held for 20 s were never closed). The
    hooks are uvicorn's httptools callbacks; the limits are the Settings of the process."""

    limits = Settings()  # set from the environment when a process starts serving

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading: asyncio.TimerHandle | None = None
        self._sending: asyncio.TimerHandle | None = None
        self._wait_for("idle", self.timeout_keep_alive)  # nothing sent yet: as idle as between requests

    def on_message_begin(self) -> None:  # a request's first byte
        super().on_message_begin()
        self._wait_for("head", self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._wait_for("body", self.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_waiting()

    def pause_writing(self) -> None:  # the client is not reading what was sent
        super().pause_writing()
        if self._sending is None:
            # abort, not close: close would wait for the buffer to drain, which is what never happens.
            self._sending = self.loop.call_later(self.limits.send_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_sending()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._stop_sending()
        super().connection_lost(exc)

    def _stop_sending(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None

    def _wait_for(self, part: str, seconds: float) -> None:
        self._stop_waiting()
        self._reading = self.loop.call_later(seconds, self._too_slow, part, seconds)

    def _stop_waiting(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _too_slow(self, part: str, seconds: float) -> None:
        self._reading = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server holds the reading (an answer in progress), not the client
            self._wait_for(part, seconds)
            return
        cycle = self.cycle
        # Say why, when no answer is under way on this connection (head) or to this request (body).
        if (part == "head" and (cycle is None or cycle.response_complete)) or \
                (part == "body" and cycle is not None and not cycle.response_started):
            body = dumps({"error": "request_timeout", "message": f"the request {part} did not arrive within "
                                                                 f"{seconds:g} s", "problems": []})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()
