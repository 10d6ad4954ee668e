"""A loopback CSMS in its own thread: the independent checker for tests, `appliance demo` and benchmarks.

Why a thread with its own asyncio loop: the `ocpp` library and `websockets` are asyncio code, while the
station and its tests are Trio. Running the CSMS on a private loop in a private thread lets a Trio test, a
plain pytest test or a test that spawns the station as a subprocess all drive it the same way — through
blocking, thread-safe methods — without mixing event loops. From Trio, call those methods in a worker thread
(`csms.trio.…` does that for you) so the Trio loop keeps running.

Typical use::

    with LoopbackCsms(passwords={"CS001": "0123456789abcdef"}) as csms:
        ...start the station against csms.url ...
        csms.wait_action("CS001", "BootNotification")
        result = csms.call("CS001", "GetVariables", {"getVariableData": [...]})
        assert csms.violations == []
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hmac
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from .behaviour import Behaviour
from .records import ConnectionRecord, RecordedFrame, Recorder, WireViolation
from .replies import CsmsCallTimeout, CsmsError, Responder, StationNotConnected
from .session import RecordingConnection, StationSession

if TYPE_CHECKING:
    import ssl

    from .trio_adapter import TrioCsms

log = logging.getLogger("appliance.lab.csms")

#: Spelled here rather than imported from the firmware (`link.transport.SUBPROTOCOL`): an independent checker
#: must not accept a typo in the station's offer just because it shares the station's constant.
ACCEPTED_SUBPROTOCOL = Subprotocol("ocpp2.0.1")
T = TypeVar("T")

#: Extra time a blocking caller waits beyond the operation's own timeout, so the operation's own (more
#: precise) error wins over the generic one.
_GRACE = 5.0


@dataclass
class _Live:
    """A station's current OCPP session (event-loop thread only)."""

    ws: ServerConnection
    session: StationSession
    connection_id: int


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) from `Authorization: Basic …`, or None when absent or unreadable."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(":")  # identities never contain ':'; passwords may
    return (username, password) if colon else None


def _client_certificate(connection: ServerConnection) -> bytes | None:
    """The DER certificate a TLS client presented (Security Profile 3), if any."""
    ssl_object = connection.transport.get_extra_info("ssl_object")
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


def _offered_subprotocols(request: Request) -> tuple[str, ...]:
    offered: list[str] = []
    for value in request.headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(item.strip() for item in value.split(",") if item.strip())
    return tuple(offered)


class LoopbackCsms:
    """An OCPP 2.0.1 CSMS on the `ocpp` library, in its own thread, recording everything it sees.

    All public methods are thread-safe and may be called from any thread except the CSMS's own (where the
    blocking ones would deadlock; they raise instead). None of them blocks the CSMS's event loop.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        passwords: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        boot_responses: list[tuple[str, int]] | None = None,
        heartbeat_interval: int = 300,
        path: str = "/ocpp",
        reject_before_accepted: bool = True,
        ws_ping_interval: float | None = None,
        close_timeout: float = 2.0,
        max_frames: int = 200_000,
    ) -> None:
        """
        passwords: station id → basic-auth password; None = no auth (security profile 0).
        boot_responses: (status, interval) for successive BootNotifications of each station; the last one
            repeats. Default: [("Accepted", heartbeat_interval)].
        path: the endpoint path; stations connect to `url + "/" + id`, any other path gets HTTP 404.
        reject_before_accepted: answer a station's CALLs with CALLERROR SecurityError (and record a violation)
            while its boot is Pending/Rejected, as a real CSMS does (B02/B03, errata FR.04).
        ws_ping_interval: WebSocket pings from the CSMS (None = never, so tests see only the station's pings).
        close_timeout: how long a close handshake may take before the TCP connection is dropped — short, so
            that stop() is quick even when a proxy blackholes the station.
        max_frames: a bound on the recording: when full, the older half is dropped (benchmarks run long).
        """
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError("path must start with '/' and not end with it, e.g. '/ocpp'")
        self.host = host
        self.port = port
        self.path = path
        self._ssl = ssl_context
        self._ping_interval = ws_ping_interval
        self._close_timeout = close_timeout
        self._recorder = Recorder(max_frames)
        self._behaviour = Behaviour(boot_responses, heartbeat_interval, passwords, reject_before_accepted)
        self._refusing = False
        # Lifecycle (guarded by _lifecycle): "new" → "running" → "stopped".
        self._lifecycle = threading.Lock()
        self._state = "new"
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        # Event-loop thread only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._stop_requested: asyncio.Event | None = None
        self._server: Server | None = None
        # Connection ids from process_request to the handler; weak, so abandoned handshakes cannot pile up.
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, int] = weakref.WeakKeyDictionary()
        self._live: dict[str, _Live] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ws://127.0.0.1:40123/ocpp; the station appends '/<id>'."""
        scheme = "wss" if self._ssl is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path}"

    def start(self) -> Self:
        """Start the thread, its event loop and the server; return once listening (`port`/`url` valid)."""
        with self._lifecycle:
            if self._state != "new":
                raise RuntimeError("a LoopbackCsms can be started once; use restart() to bounce it")
            self._state = "running"
            self._thread = threading.Thread(target=self._thread_main, name="loopback-csms", daemon=True)
            self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            with self._lifecycle:
                self._state = "stopped"
            raise self._startup_error
        log.info("loopback CSMS listening on %s", self.url)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Close every connection with a close frame (1001), stop listening, end the thread. Idempotent."""
        self._refuse_loop_thread("stop")
        with self._lifecycle:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            loop, thread, stop_requested = self._loop, self._thread, self._stop_requested
        assert loop is not None and thread is not None and stop_requested is not None
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop already ended (it crashed)
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout)
        if thread.is_alive():
            raise CsmsError(f"the loopback CSMS thread did not end within {timeout:g} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def restart(self, down_for: float = 0, *, code: int = CloseCode.SERVICE_RESTART) -> None:
        """Drop every connection (close frame with `code`, default 1012), stop listening, wait `down_for`
        seconds (connection attempts meanwhile are refused by the OS), then listen again on the same port."""
        self._submit("restart", lambda: self._restart(down_for, code), down_for + 2 * self._close_timeout + 30)

    def refuse_connections(self, on: bool) -> None:
        """While on, keep listening but answer every WebSocket upgrade with HTTP 503 (TC_B_57's "connection
        attempt is not accepted"). Existing connections stay up."""
        self._refusing = bool(on)

    # ---- scripting the CSMS --------------------------------------------------------------------------------

    def set_boot_responses(self, responses: Iterable[tuple[str, int]]) -> None:
        """A new (status, interval) script for BootNotifications; each station starts again at entry one."""
        self._behaviour.set_boot_responses(responses)

    def set_response(self, action: str, responder: Responder | None, *, validate: bool = True) -> None:
        """Override how the CSMS answers the station's `action` CALLs (None restores the default answer).

        `responder` is a reply or `fn(station_id, payload) -> reply | None` (None: answer as by default); a
        reply is a camelCase payload dict or `ocpp.v201.call_result` object, `CsmsCallError(code)`,
        `Delayed(s, reply)` or `NO_ANSWER`. With `validate` (default) an answer failing the schema is recorded
        as an "out" violation and replaced by CALLERROR InternalError; `validate=False` sends it as is (for
        negative tests).
        """
        self._behaviour.set_override(action, responder, validate)

    def set_token(
        self, token: str, status: str, group_id: str | None = None, cache_expiry: datetime | str | None = None
    ) -> None:
        """The idTokenInfo to answer for `token` in Authorize and TransactionEvent (default: Accepted)."""
        self._behaviour.set_token(token, status, group_id, cache_expiry)

    def set_unknown_token_status(self, status: str) -> None:
        """The status for tokens without set_token (default Accepted; e.g. "Unknown" or "Invalid")."""
        self._behaviour.set_unknown_token_status(status)

    def set_password(self, station_id: str, password: str | None) -> None:
        """Change (None: remove) a station's basic-auth password, e.g. after a SetVariables of
        SecurityCtrlr.BasicAuthPassword. On a CSMS created without `passwords` this switches auth on."""
        self._behaviour.set_password(station_id, password)

    def boot_status(self, station_id: str) -> str | None:
        """The status of the last BootNotification response this CSMS gave the station, if any."""
        return self._behaviour.boot_status(station_id)

    # ---- talking to a station ------------------------------------------------------------------------------

    def call(
        self, station_id: str, action: str, payload: Any, timeout: float = 10, *, validate: bool = True
    ) -> dict[str, Any]:
        """Send a CSMS→station CALL and return the station's CALLRESULT payload (camelCase, as sent).

        `payload` is a camelCase dict or an `ocpp.v201.call.<Action>` object. Both the request and the
        response are validated against the official schemas by the `ocpp` library (`validate=False` skips
        both, for negative tests). Raises StationCallError (with `.code`) on a CALLERROR, CsmsCallTimeout,
        StationNotConnected, InvalidStationResponse (also recorded as a violation), InvalidCsmsRequest.
        """
        return self._submit(
            "call", lambda: self._call(station_id, action, payload, timeout, validate), timeout + _GRACE
        )

    def send_raw(self, station_id: str, text: str) -> None:
        """Send any text frame as is (malformed-frame tests); the station's answer shows up in `frames`."""
        self._submit("send_raw", lambda: self._send_raw(station_id, text), 10 + _GRACE)

    def disconnect(self, station_id: str, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bool:
        """Close the station's current connection with a close frame; False if it had none."""
        return self._submit("disconnect", lambda: self._disconnect(station_id, code, reason), self._close_timeout + 10)

    def is_connected(self, station_id: str) -> bool:
        return any(c.is_open for c in self._recorder.connections(station_id))

    # ---- what was seen -------------------------------------------------------------------------------------

    @property
    def frames(self) -> list[RecordedFrame]:
        """A snapshot of every frame in and out so far, oldest first."""
        return self._recorder.frames()

    def frames_snapshot(self, station_id: str | None = None, since: int = 0) -> list[RecordedFrame]:
        return self._recorder.frames(station_id, since)

    @property
    def connections(self) -> list[ConnectionRecord]:
        """A snapshot of every connection attempt (accepted or refused), oldest first."""
        return self._recorder.connections()

    def connections_snapshot(self, station_id: str | None = None) -> list[ConnectionRecord]:
        return self._recorder.connections(station_id)

    @property
    def violations(self) -> list[WireViolation]:
        """A snapshot of every OCPP violation seen; tests normally assert it is empty."""
        return self._recorder.violations()

    def mark(self) -> int:
        """A position in the frame recording; pass it as `since=` to consider only later frames."""
        return self._recorder.mark()

    def actions(self, station_id: str, action: str, since: int = 0) -> list[dict[str, Any]]:
        """Payloads of the station's `action` CALLs recorded so far (non-blocking)."""
        return [
            f.payload
            for f in self._recorder.frames(station_id, since)
            if f.direction == "in" and f.is_call and f.action == action
        ]

    # ---- waiting (blocking, thread-safe; never touch the event loop) ---------------------------------------

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10, *, what: str | None = None) -> T:
        """Return the first truthy `predicate()`, re-checked whenever a frame, connection or violation is
        recorded (and every 50 ms). Raises TimeoutError naming `what`."""
        return self._recorder.wait_for(predicate, timeout, what)

    def wait_connected(self, station_id: str, timeout: float = 10) -> ConnectionRecord:
        """Wait until the station has an open OCPP session; return its record. call() works from then on."""

        def open_connection() -> ConnectionRecord | None:
            return next((c for c in reversed(self._recorder.connections(station_id)) if c.is_open), None)

        return self.wait_for(open_connection, timeout, what=f"{station_id} to connect")

    def wait_disconnected(self, station_id: str, timeout: float = 10) -> None:
        self.wait_for(lambda: not self.is_connected(station_id), timeout, what=f"{station_id} to disconnect")

    def wait_action(
        self,
        station_id: str,
        action: str,
        timeout: float = 10,
        *,
        count: int = 1,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        since: int = 0,
    ) -> list[dict[str, Any]]:
        """Wait until the station has sent at least `count` `action` CALLs (matching `predicate`, after frame
        `since`); return all matching payloads so far."""

        def matching() -> list[dict[str, Any]] | None:
            found = [p for p in self.actions(station_id, action, since) if predicate is None or predicate(p)]
            return found if len(found) >= count else None

        return self.wait_for(matching, timeout, what=f"{count} × {action} from {station_id}")

    @property
    def trio(self) -> TrioCsms:
        """The blocking methods as Trio coroutines (run in a worker thread), for Trio tests."""
        from .trio_adapter import TrioCsms

        return TrioCsms(self)

    # ---- the event-loop thread -----------------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported to start(), or logged if it happens later
            if not self._ready.is_set():
                self._startup_error = error
            else:
                log.exception("loopback CSMS event loop failed")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._stop_requested = asyncio.Event()
        await self._listen()
        self._ready.set()
        await self._stop_requested.wait()
        await self._close_server(CloseCode.GOING_AWAY)
        for task in list(self._background):
            task.cancel()

    async def _listen(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            subprotocols=[ACCEPTED_SUBPROTOCOL],
            select_subprotocol=self._select_subprotocol,
            process_request=self._process_request,
            process_response=self._process_response,
            ssl=self._ssl,
            ping_interval=self._ping_interval,
            ping_timeout=None if self._ping_interval is None else 2 * self._ping_interval,
            close_timeout=self._close_timeout,
            logger=logging.getLogger("appliance.lab.csms.websockets"),
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_server(self, code: int) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True, code=code)
            await server.wait_closed()

    async def _restart(self, down_for: float, code: int) -> None:
        await self._close_server(code)
        await asyncio.sleep(down_for)
        await self._listen()

    def _select_subprotocol(self, connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        # Part 4 §3.2: without an agreeable subprotocol the CSMS completes the handshake *without* the header
        # and then closes (done in _handle), rather than answering HTTP 400 as websockets would by default.
        return ACCEPTED_SUBPROTOCOL if ACCEPTED_SUBPROTOCOL in offered else None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Record the attempt, then refuse it if the switch, the path or basic auth says so."""
        parent, _, last = urlsplit(request.path).path.rpartition("/")
        station_id = unquote(last)
        credentials = _basic_credentials(request.headers.get("Authorization"))
        auth_required = self._behaviour.auth_required
        expected = self._behaviour.password(station_id) if auth_required else None
        auth_ok: bool | None = None
        if auth_required:
            auth_ok = (
                credentials is not None
                and expected is not None
                and credentials[0] == station_id
                and hmac.compare_digest(credentials[1].encode(), expected.encode())
            )
        connection_id = self._recorder.open_connection(
            station_id=station_id,
            path=request.path,
            remote=tuple(connection.remote_address) if connection.remote_address else None,
            offered_subprotocols=_offered_subprotocols(request),
            auth_username=credentials[0] if credentials else None,
            auth_ok=auth_ok,
            client_certificate=_client_certificate(connection),
        )
        self._handshakes[connection] = connection_id
        refusal: tuple[int, str] | None = None
        if self._refusing:
            refusal = (503, "refusing connections (test switch)")
        elif parent != self.path or not station_id:
            refusal = (404, f"no OCPP endpoint at {request.path!r}; expected {self.path}/<station id>")
        elif auth_required and expected is None:
            refusal = (404, f"unknown station {station_id!r}")
        elif auth_required and not auth_ok:
            refusal = (401, "basic auth failed" if credentials else "basic auth required")
        if refusal is None:
            return None
        status, reason = refusal
        self._recorder.update_connection(connection_id, rejected=reason)
        response = connection.respond(status, reason + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        connection_id = self._handshakes.get(connection)
        if connection_id is None:
            return
        self._recorder.update_connection(
            connection_id,
            http_status=response.status_code,
            subprotocol=response.headers.get("Sec-WebSocket-Protocol"),
        )
        if response.status_code != 101:
            self._handshakes.pop(connection, None)
            self._recorder.update_connection(connection_id, closed_monotonic=time.monotonic(), close_initiator="none")

    async def _handle(self, ws: ServerConnection) -> None:
        """One accepted WebSocket: run the station's OCPP session until the connection ends."""
        connection_id = self._handshakes.pop(ws)
        station_id = self._recorder.connection(connection_id).station_id
        try:
            if ws.subprotocol != ACCEPTED_SUBPROTOCOL:
                self._recorder.update_connection(connection_id, rejected="the station did not offer ocpp2.0.1")
                await ws.close(CloseCode.PROTOCOL_ERROR, "subprotocol ocpp2.0.1 required")
                return
            wire = RecordingConnection(ws, self._recorder, station_id, connection_id)
            live = _Live(ws, StationSession(wire, self._recorder, self._behaviour), connection_id)
            previous = self._live.get(station_id)
            self._live[station_id] = live
            if previous is not None:
                # The station reconnected while we still hold its old connection (a pulled cable leaves it
                # half open): the newest one wins, as with a real CSMS.
                self._spawn(previous.ws.close(CloseCode.NORMAL_CLOSURE, "replaced by a newer connection"))
            self._recorder.update_connection(connection_id, accepted=True)
            try:
                await live.session.start()
            except ConnectionClosed:
                pass
            finally:
                live.session.cancel_late_replies()
                if self._live.get(station_id) is live:
                    del self._live[station_id]
        finally:
            self._record_close(connection_id, ws)

    def _record_close(self, connection_id: int, ws: ServerConnection) -> None:
        protocol = ws.protocol
        if protocol.close_rcvd_then_sent is not None:
            initiator = "station" if protocol.close_rcvd_then_sent else "csms"
        elif protocol.close_sent is not None:
            initiator = "csms"
        elif protocol.close_rcvd is not None:
            initiator = "station"
        else:
            initiator = "none"
        self._recorder.update_connection(
            connection_id,
            closed_monotonic=time.monotonic(),
            close_code=ws.close_code,
            close_reason=ws.close_reason,
            close_initiator=initiator,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _session(self, station_id: str) -> _Live:
        live = self._live.get(station_id)
        if live is None:
            raise StationNotConnected(f"station {station_id!r} is not connected")
        return live

    async def _call(self, station_id: str, action: str, payload: Any, timeout: float, validate: bool) -> Any:
        return await self._session(station_id).session.request(action, payload, timeout, validate)

    async def _send_raw(self, station_id: str, text: str) -> None:
        await self._session(station_id).session.wire.send(text)

    async def _disconnect(self, station_id: str, code: int, reason: str) -> bool:
        live = self._live.get(station_id)
        if live is None:
            return False
        await live.ws.close(code, reason)
        return True

    # ---- crossing from caller threads into the loop --------------------------------------------------------

    def _refuse_loop_thread(self, name: str) -> None:
        if threading.get_ident() == self._loop_thread_id:
            raise RuntimeError(
                f"LoopbackCsms.{name}() blocks; it cannot run on the CSMS's own event-loop thread (e.g. "
                "inside a set_response function) — it would deadlock"
            )

    def _submit(self, name: str, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run `make()` on the event loop and wait for it here, at most `timeout` seconds."""
        with self._lifecycle:
            running = self._state == "running" and self._ready.is_set() and self._startup_error is None
            loop = self._loop
        if not running or loop is None:
            raise CsmsError("the loopback CSMS is not running (start() it first; it cannot be used after stop())")
        self._refuse_loop_thread(name)
        coro = make()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop has just ended
            coro.close()
            raise CsmsError("the loopback CSMS is not running") from None
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise CsmsError("the loopback CSMS stopped before the operation completed") from None
        except TimeoutError:
            if future.done():
                raise  # the operation's own timeout (e.g. CsmsCallTimeout), with its precise message
            future.cancel()
            raise CsmsCallTimeout(f"the CSMS operation did not complete within {timeout:g} s") from None
