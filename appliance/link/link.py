"""The connection supervisor: connect, boot, stay alive, notice a dead link, reconnect with back-off.

One `Link` lives for the whole process. Each connection is a *session* with its own nursery: the RPC receive
and dispatch tasks, the ping loop, and — once the CSMS has accepted the boot — the online services the
station registered (heartbeat, status reporting, journal delivery …). When the link dies, the session's
nursery is cancelled as a whole, so no task outlives the connection it was using.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import trio
import trio_websocket

from appliance.devicemodel import settings as keys
from appliance.devicemodel.settings import Settings
from appliance.link.backoff import Backoff, BackoffSettings
from appliance.link.rpc import Dispatcher, LinkDown, RpcSession
from appliance.link.transport import MAX_MESSAGE_SIZE, Endpoint, HandshakeFailed, open_websocket
from appliance.protocol import SchemaRegistry
from appliance.protocol.session import LinkState, Session
from appliance.security.tls import TlsRefused
from appliance.util.watched import Watched

log = logging.getLogger("appliance.link")


__all__ = ["Link", "LinkDead", "LinkState", "OnlineService"]


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The first real exception inside (possibly nested) exception groups from nurseries."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


#: What one CSMS request may hold by the device model's own limits. ItemsPerMessage needs no entry of its own:
#: a request within ItemsPerMessage but over BytesPerMessage is not permitted either.
BYTES_PER_MESSAGE = (
    *(keys.bytes_per_message(request) for request in keys.DEVICE_DATA_REQUESTS),
    keys.LOCAL_LIST_BYTES_PER_MESSAGE,
)


def _only_link_down(exc: BaseException) -> bool:
    """LinkDown, or a group of nothing else: a service with its own nursery (journal delivery) gets the link's
    loss wrapped in an exception group, which is still the session ending, not the service failing."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_link_down(inner) for inner in exc.exceptions)
    return isinstance(exc, LinkDown)


class LinkDead(Exception):
    """The link stopped answering pings: treat it like a pulled cable."""


OnlineService = Callable[["Link"], Awaitable[None]]
BootProcedure = Callable[["Link"], Awaitable[None]]
#: Told of a refused connection attempt: (security event type, cause); see `add_refusal_listener`. Synchronous:
#: the link's back-off timing must not wait for a listener's disk write.
RefusalListener = Callable[[str, str], None]


class Link:
    """Owns the CSMS connection and exposes `call()` to the rest of the station.

    The rules (boot states, what may be sent, one outstanding CALL) are `appliance.protocol.session`'s; the link
    feeds it the connection's events and mirrors its state into `state`, which tasks wait on.
    """

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        registry: SchemaRegistry,
        settings: Settings,
        settings_changed: Watched[int],
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._settings = settings
        self._settings_changed = settings_changed
        self._session: RpcSession | None = None
        self._ws: trio_websocket.WebSocketConnection | None = None
        self._stopping = False
        self._online_services: list[tuple[str, OnlineService]] = []
        self._refusal_listeners: list[RefusalListener] = []
        self._reconnect_now = trio.Event()
        self.protocol = Session()
        self.state: Watched[LinkState] = Watched(self.protocol.state)
        self.offline_since: float | None = None  # trio time the link was lost; None while connected
        self.last_offline_duration: float = math.inf  # how long the previous outage lasted (inf: never online)
        self.connections = 0
        self.backoff = Backoff(self._backoff_settings)

    # --- for the rest of the station -------------------------------------------------------------------

    def add_online_service(self, name: str, service: OnlineService) -> None:
        """Run `service(link)` in every session once the boot is accepted; it is cancelled with the session."""
        self._online_services.append((name, service))

    def add_refusal_listener(self, listener: RefusalListener) -> None:
        """Call `listener(event_type, cause)` when an attempt is refused for a reason OCPP makes a security
        event of: a TLS refusal (InvalidCsmsCertificate, InvalidTLSVersion, InvalidTLSCipherSuite) or basic auth
        refused by the CSMS (FailedToAuthenticateAtCsms). Called on every such attempt; the listener decides
        what to raise (the security block: once per outage)."""
        self._refusal_listeners.append(listener)

    @property
    def online(self) -> bool:
        return self.state.value is LinkState.ACCEPTED

    @property
    def accepted_once(self) -> bool:
        """The CSMS accepted a boot of this process: a reconnect does not boot again."""
        return self.protocol.accepted_once

    async def call(
        self,
        action: str,
        payload: dict,
        *,
        timeout: float | None = None,
        message_id: str | None = None,
        payload_text: str | None = None,
    ) -> dict:
        """Send a CALL on the current connection, if the boot state allows it (`Session.send_refusal`).

        `payload_text`: `payload` already serialised as compact JSON (see `RpcSession.call`)."""
        session = self._session
        if session is None:
            raise LinkDown("offline")
        return await session.call(action, payload, timeout=timeout, message_id=message_id, payload_text=payload_text)

    def boot_answered(self, status: str) -> None:
        """The boot procedure's word: the CSMS answered BootNotification with `status`."""
        self.state.set(self.protocol.boot_answered(status))

    async def shutdown(self, timeout: float = 2.0) -> None:
        """Close the current connection with a close handshake and stop reconnecting.

        Done before the station's tasks are cancelled, while trio-websocket's reader can still receive the
        CSMS's answering close frame (cancelled first, the close would wait out its whole timeout).
        """
        self._stopping = True
        session, ws = self._session, self._ws
        with trio.move_on_after(timeout):
            if session is not None:
                await session.hold_calls()
            if ws is not None:
                await ws.aclose()

    def reconnect(self, reason: str) -> None:
        """Drop the current connection and connect again at once (e.g. a new basic-auth password)."""
        log.info("reconnecting: %s", reason)
        self._reconnect_now.set()

    # --- supervision ---------------------------------------------------------------------------------

    def _backoff_settings(self) -> BackoffSettings:
        return BackoffSettings(
            wait_minimum=self._settings.seconds(keys.RETRY_BACKOFF_WAIT_MINIMUM),
            random_range=self._settings.seconds(keys.RETRY_BACKOFF_RANDOM_RANGE),
            repeat_times=self._settings.integer(keys.RETRY_BACKOFF_REPEAT_TIMES),
        )

    def frame_limit(self) -> int:
        """The WebSocket message limit for the next connection: at least MAX_MESSAGE_SIZE, and never below the
        largest request the configured BytesPerMessage values permit (so it is answered, not cut off)."""
        return max(MAX_MESSAGE_SIZE, *(self._settings.integer(key) for key in BYTES_PER_MESSAGE))

    def _message_timeout(self) -> float:
        return self._settings.seconds(keys.MESSAGE_TIMEOUT)

    async def run(self, endpoint: Callable[[], Endpoint], boot: BootProcedure) -> None:
        """Connect and reconnect until cancelled or shut down.

        `endpoint()` says where to connect on each attempt (network profiles, fall-back); `boot(link)` runs on
        every new connection and returns once the CSMS has accepted the station.
        """
        while not self._stopping:
            lost_reason = await self._one_connection(endpoint(), boot)
            if self._stopping:
                break
            if self.offline_since is None:
                self.offline_since = trio.current_time()
            delay = 0.0 if self._reconnect_now.is_set() else self.backoff.next_delay()
            log.warning("CSMS link down (%s); next attempt in %.1f s", lost_reason, delay)
            with trio.move_on_after(delay):
                await self._reconnect_now.wait()
            # The attempt about to start answers every request so far, also one made during the wait (else the
            # next session would end at once, answering it again).
            self._reconnect_now = trio.Event()

    async def _one_connection(self, endpoint: Endpoint, boot: BootProcedure) -> str:
        """One connection attempt and, if it works, the whole session. Returns why it ended."""
        ping_interval = self._settings.seconds(keys.WEBSOCKET_PING_INTERVAL)
        timeout = self._message_timeout()
        dead_after = min(timeout, ping_interval) if ping_interval > 0 else timeout
        log.info("connecting to %s", endpoint.redacted())
        reason = "reconnect requested"
        refusal: tuple[str, str] | None = None
        try:
            async with open_websocket(
                endpoint, connect_timeout=timeout, dead_after=dead_after, max_message_size=self.frame_limit()
            ) as ws:
                self.connections += 1
                self.backoff.reset()
                self._ws = ws
                log.info("connected to %s", endpoint.full_url)
                try:
                    await self._session_body(ws, boot)
                finally:
                    # Offline from this instant, not after the close handshake below (up to its timeout on a
                    # dead link): events produced meanwhile must carry offline=true.
                    self._enter_offline()
        except* trio.TooSlowError:
            reason = "timed out"
        except* TlsRefused as group:
            refused = _leaf(group)
            assert isinstance(refused, TlsRefused)
            reason = str(refused)
            log.error("TLS connection to %s refused: %s", endpoint.full_url, refused.cause)
            if refused.event is not None:
                refusal = (refused.event, refused.cause)
        except* (LinkDead, LinkDown, HandshakeFailed) as group:
            reason = str(_leaf(group))
        except* trio_websocket.ConnectionRejected as group:
            status = getattr(_leaf(group), "status_code", 0)
            hint = " (basic auth refused: check the password)" if status == 401 else ""
            reason = f"handshake rejected with HTTP {status}{hint}"
            if status == 401:
                refusal = ("FailedToAuthenticateAtCsms", f"HTTP 401 from {endpoint.full_url}")
        except* trio_websocket.ConnectionClosed as group:
            close = getattr(_leaf(group), "reason", None)
            reason = f"closed ({close.code} {close.name})" if close else "closed"
        except* (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as g:
            leaf = _leaf(g)
            reason = f"{type(leaf).__name__}: {leaf}"
        finally:
            self._enter_offline()
        if refusal is not None:
            for listener in self._refusal_listeners:
                listener(*refusal)
        return reason

    def _enter_offline(self) -> None:
        self._session = None
        self._ws = None
        if self.protocol.state is not LinkState.OFFLINE:
            self.protocol.disconnected()
            self.offline_since = trio.current_time()
            self.state.set(LinkState.OFFLINE)

    async def _session_body(self, ws: trio_websocket.WebSocketConnection, boot: BootProcedure) -> None:
        session = RpcSession(ws, self._dispatcher, self._registry, self._message_timeout, self.protocol)
        async with trio.open_nursery() as nursery:
            self.protocol.connected()
            await nursery.start(session.run)
            nursery.start_soon(self._ping_loop, ws)
            self._session = session
            self.state.set(LinkState.CONNECTED)
            if self.offline_since is not None:
                self.last_offline_duration = trio.current_time() - self.offline_since
            self.offline_since = None
            await boot(self)
            self.protocol.boot_done()
            self.state.set(LinkState.ACCEPTED)
            for name, service in self._online_services:
                nursery.start_soon(self._run_service, name, service, name=f"online:{name}")
            await self._reconnect_now.wait()
            nursery.cancel_scope.cancel()

    async def _run_service(self, name: str, service: OnlineService) -> None:
        """An online service that fails is logged and restarted; a link loss cancels it from outside."""
        delay = 1.0
        while True:
            try:
                await service(self)
                return
            except Exception as exc:
                if _only_link_down(exc):
                    return  # the session is ending; the next one starts the service again
                log.exception("online service %s failed; restarting in %.0f s", name, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _ping_loop(self, ws: trio_websocket.WebSocketConnection) -> None:
        """WebSocket pings with a deadline: the only way to notice a silently dead path quickly.

        The next ping is due `WebSocketPingInterval` after the last one; a changed interval applies at once.
        """
        last = trio.current_time()
        while True:
            interval = self._settings.seconds(keys.WEBSOCKET_PING_INTERVAL)
            if interval <= 0:
                await self._settings_changed.wait_change()
                continue
            with trio.move_on_at(last + interval) as wait:
                await self._settings_changed.wait_change()
            if not wait.cancelled_caught:
                continue
            deadline = min(interval, self._message_timeout())
            with trio.move_on_after(deadline) as scope:
                await ws.ping()
            if scope.cancelled_caught:
                raise LinkDead(f"no pong within {deadline:g} s")
            last = trio.current_time()
