"""The cheapest possible CSMS, so a benchmark can print the station's own cost beside a figure.

A benchmark that says "replay takes 18 s" does not say whose time that is: the station's, the `ocpp`
library's validation, or the loopback itself. `FastCsms` does the least an OCPP-J CSMS can do — find the
CALL's id and action, write a canned answer — on a blocking raw socket (`appliance.lab.rawws`, no
trio-websocket or wsproto in the way), one thread per connection, so the same replay run against it shows the
station's share per event.

It accepts any station and answers every CALL at once with the smallest valid payload for its action
(BootNotification Accepted, Heartbeat with the time, Authorize Accepted, everything else `{}`), counting what
it acknowledged; pings are answered with pongs.

Lab equipment: the firmware never imports this module.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any

from appliance.lab.rawws import CLOSE, PING, PONG, TEXT, Peer, accept_ws


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _csms_answer(action: str) -> dict[str, Any]:
    if action == "BootNotification":
        return {"currentTime": _utc_now(), "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": _utc_now()}
    if action == "Authorize":
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


#: Answers that do not depend on the time, pre-serialised once.
_CANNED: dict[str, bytes] = {"Authorize": json.dumps(_csms_answer("Authorize")).encode()}


def _answer_text(action: str) -> bytes:
    canned = _CANNED.get(action)
    if canned is not None:
        return canned
    if action in ("BootNotification", "Heartbeat"):
        return json.dumps(_csms_answer(action)).encode()
    return b"{}"


class FastCsms:
    """A CSMS that validates nothing and answers at once; `count(action)` says how many it acknowledged."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.acknowledged: dict[str, int] = {}
        self._lock = threading.Lock()
        self._peers: list[Peer] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, name="FastCsms", daemon=True)

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def count(self, action: str) -> int:
        with self._lock:
            return self.acknowledged.get(action, 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            peers = list(self._peers)
        for peer in peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                peer = accept_ws(self._listener, timeout=None)
            except (OSError, ConnectionError, KeyError):
                if self._stopping:
                    return
                continue
            with self._lock:
                self._peers.append(peer)
            threading.Thread(target=self._serve, args=(peer,), name="FastCsms-peer", daemon=True).start()

    def _serve(self, peer: Peer) -> None:
        try:
            while True:
                opcode, payload, _ = peer.receive()
                if opcode == PING:
                    peer.send(payload, PONG)
                elif opcode == CLOSE:
                    peer.send(payload[:2], CLOSE)
                    return
                elif opcode == TEXT:
                    self._answer(peer, payload)
        except OSError:
            pass
        finally:
            with self._lock:
                self._peers.remove(peer)
            peer.sock.close()

    def _answer(self, peer: Peer, payload: bytes) -> None:
        # `[2,"id","Action",{...}]`: the id and the action are the first two strings; no full parse needed.
        if not payload.startswith(b"[2,"):
            return
        first = payload.index(b'"')
        end_id = payload.index(b'"', first + 1)
        start_action = payload.index(b'"', end_id + 1)
        end_action = payload.index(b'"', start_action + 1)
        message_id = payload[first + 1 : end_id]
        action = payload[start_action + 1 : end_action].decode()
        peer.send(b'[3,"' + message_id + b'",' + _answer_text(action) + b"]")
        with self._lock:
            self.acknowledged[action] = self.acknowledged.get(action, 0) + 1
