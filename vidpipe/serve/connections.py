"""Time limits on the service's HTTP connections, which uvicorn does not set by itself: a client that
never finishes its request's headers (slowloris), that stops sending a body it announced, or that
stops reading what it is sent (a stuck or vanished live viewer) is dropped after a bounded time, its
socket closed at once (its unsent data discarded), so such clients never pile up open sockets."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds for a request's line and headers, from the connection (or the last answer)
BODY_TIMEOUT = 10.0  # seconds without a byte of a request body still due
BODY_TOTAL = 30.0  # seconds for a whole request body (at most 1 MiB: 35 KB/s), from its headers
WRITE_TIMEOUT = 20.0  # seconds a client may accept nothing of what it is sent (a viewer that stopped reading)
CHECK_EVERY = 1.0


def guarded(
    base: type[asyncio.Protocol],
    header: float = HEADER_TIMEOUT,
    body: float = BODY_TIMEOUT,
    write: float = WRITE_TIMEOUT,
    body_total: float = BODY_TOTAL,
) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's HTTP protocol class) with the time limits above; uvicorn's ``http=``."""

    class Guarded(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            now = time.monotonic()
            self._waiting_since = now  # for a request's headers
            self._last_data = now
            self._stalled_since: float | None = None
            self._request: tuple[object, float] = (None, now)  # the request seen last, since when
            self._watch = asyncio.get_running_loop().call_later(CHECK_EVERY, self._check)

        def connection_lost(self, exc) -> None:
            self._watch.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._last_data = time.monotonic()
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._waiting_since = time.monotonic()
            super().on_response_complete()

        def pause_writing(self) -> None:
            self._stalled_since = time.monotonic()
            super().pause_writing()

        def resume_writing(self) -> None:
            self._stalled_since = None
            super().resume_writing()

        def _check(self) -> None:
            if self.transport.get_protocol() is not self:  # (upgraded: another protocol has it now)
                return
            now = time.monotonic()
            if self.transport.is_closing():  # closed: it goes once its unsent data went, if ever
                if not self.transport.get_write_buffer_size():
                    return
                self._stalled_since = self._stalled_since or now
            cycle = self.cycle
            if cycle is not self._request[0]:
                self._request = (cycle, now)
            receiving = cycle is not None and cycle.more_body and not cycle.response_started  # its body
            why = None
            if self._stalled_since is not None and now - self._stalled_since > write:
                why = f"read nothing of its answer for {write:g} s"
            elif (cycle is None or cycle.response_complete) and now - self._waiting_since > header:
                why = f"sent no complete request in {header:g} s"
            elif receiving and now - self._last_data > body:
                why = f"sent nothing of its request's body for {body:g} s"
            elif receiving and now - self._request[1] > body_total:
                why = f"sent no whole request body in {body_total:g} s"
            if why is None:
                self._watch = asyncio.get_running_loop().call_later(CHECK_EVERY, self._check)
                return
            client = self.client
            if (cycle is not None and not cycle.response_complete) or self._stalled_since is not None:
                # a viewer's or a request's end is worth a line; an idle connection closed is routine
                where = f"{client[0]}:{client[1]}" if client else "a client"
                log.warning("dropped the connection of %s: it %s", where, why)
            self.transport.abort()  # not close(): that would wait for the unsent data to go, forever

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
