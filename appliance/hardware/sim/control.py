"""The control socket of the simulated hardware: how `appliance sim …` reaches a running station.

Why a Unix domain socket: it lives in the station's data directory, needs no port, and file permissions
(0o660) decide who may plug cars into the station. The protocol is deliberately tiny so a person can drive it
with `socat` and tests need no client library:

* the client connects, sends one request line (UTF-8 JSON object, newline-terminated, at most
  `MAX_REQUEST_BYTES`), and reads one response line (a JSON object); the server then closes the connection;
* request: ``{"command": "plug"|"charge"|"suspend"|"unplug"|"tap"|"fault"|"clear"|"silence"|"revive"|"status",
  ...}`` with
  ``"evse": int`` (required by every command but `tap`, where it is optional/null and `status`, where it is
  ignored), ``"watts": number`` (optional, `charge`), ``"token": str`` (`tap`), ``"code": str`` (optional,
  `fault`);
* response: ``{"ok": true, "command": ..., ...}`` or
  ``{"ok": false, "command": ..., "error": "why", "errorKind": "refused"|"badRequest"|"internal"}``.
  "refused" means the request was well-formed but makes no sense in the current state (unplug with nothing
  plugged, unknown EVSE, …); "badRequest" means it was not a valid request at all.

Several clients may be connected at once: each connection is its own task. A command that emits a hardware
event waits until the station has room for it in its event channel (back-pressure), so a station that stops
reading events makes `appliance sim` time out instead of silently losing a plug-in. Nothing a client sends can
crash the station: every failure becomes an error response and a log line.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import socket as stdlib_socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from appliance.hardware.sim.sim import SimHardware

LOG = logging.getLogger("appliance.hardware.sim")

#: A request is one short JSON line; anything longer is a confused client, not a command.
MAX_REQUEST_BYTES = 4096
#: A client that connects and says nothing must not hold a task forever.
READ_TIMEOUT_S = 5.0
#: A client that stops reading its answer must not hold a task forever either.
WRITE_TIMEOUT_S = 5.0
#: sun_path is 108 bytes on Linux including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
SOCKET_MODE = 0o660
#: Many `appliance sim` calls at once (scripts, tests) must queue, not fail with EAGAIN.
LISTEN_BACKLOG = 128

COMMANDS = ("plug", "charge", "suspend", "unplug", "tap", "fault", "clear", "silence", "revive", "status")


class CommandRefused(Exception):
    """A well-formed command that makes no sense in the simulated world's current state."""

    kind = "refused"


class BadRequest(CommandRefused):
    """A request that is not a valid command at all (wrong JSON, wrong types, unknown command)."""

    kind = "badRequest"


class ControlSocketError(OSError):
    """The control socket cannot be set up (path too long, occupied by a live station or by a non-socket)."""


# --------------------------------------------------------------------------------------------- dispatch


def _field_int(request: dict[str, Any], key: str, *, required: bool) -> int | None:
    value = request.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required")
        return None
    if type(value) is not int:
        raise BadRequest(f"'{key}' must be an integer, got {value!r}")
    return value


def _field_number(request: dict[str, Any], key: str) -> float | None:
    value = request.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"'{key}' must be a number, got {value!r}")
    return float(value)


def _field_str(request: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = request.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, got {value!r}")
    return value


def _evse_response(command: str, evse_id: int, event: str | None, state: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "command": command, "evseId": evse_id, "event": event, "evse": state}


async def dispatch(hw: SimHardware, request: Any) -> dict[str, Any]:
    """Carry out one decoded request on `hw` and return the response object (never raises CommandRefused).

    Kept separate from the socket code so tests and in-process tools can use the exact same semantics.
    """
    command = request.get("command") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise BadRequest("the request must be a JSON object")
        if not isinstance(command, str) or command not in COMMANDS:
            raise BadRequest(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
        if command == "status":
            return {"ok": True, "command": "status", **hw.status()}
        if command == "tap":
            token = _field_str(request, "token", required=True)
            assert token is not None
            evse_id = _field_int(request, "evse", required=False)
            return {"ok": True, "command": "tap", **(await hw.tap(token, evse_id))}
        evse_id = _field_int(request, "evse", required=True)
        assert evse_id is not None
        actions: dict[str, Callable[[], Awaitable[tuple[str | None, dict[str, Any]]]]] = {
            "plug": lambda: hw.plug(evse_id),
            "charge": lambda: hw.charge(evse_id, _field_number(request, "watts")),
            "suspend": lambda: hw.suspend(evse_id),
            "unplug": lambda: hw.unplug(evse_id),
            "fault": lambda: hw.raise_fault(evse_id, _field_str(request, "code", required=False)),
            "clear": lambda: hw.clear_fault(evse_id),
            "silence": lambda: hw.silence(evse_id),
            "revive": lambda: hw.revive(evse_id),
        }
        event, state = await actions[command]()
        return _evse_response(command, evse_id, event, state)
    except CommandRefused as exc:
        LOG.info("sim control: %s refused: %s", command, exc)
        return {
            "ok": False,
            "command": command if isinstance(command, str) else None,
            "error": str(exc),
            "errorKind": exc.kind,
        }


async def handle_line(hw: SimHardware, line: bytes) -> dict[str, Any]:
    """Decode one request line and dispatch it; internal errors become an error response, never a crash."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"ok": False, "command": None, "error": "the request is not a JSON object", "errorKind": "badRequest"}
    try:
        return await dispatch(hw, request)
    except Exception as exc:  # a bug in the simulator must not take the station down with it
        LOG.exception("sim control: internal error handling %r", request)
        return {
            "ok": False,
            "command": request.get("command") if isinstance(request, dict) else None,
            "error": f"internal error: {exc}",
            "errorKind": "internal",
        }


# --------------------------------------------------------------------------------------------- server


async def _read_request(stream: trio.SocketStream) -> bytes | None:
    """One request line (without the newline), or None when the client sent too much."""
    buffer = bytearray()
    while True:
        newline = buffer.find(b"\n")
        if newline >= 0:
            line = bytes(buffer[:newline])
            break
        if len(buffer) > MAX_REQUEST_BYTES:
            return None
        chunk = await stream.receive_some(MAX_REQUEST_BYTES + 1)
        if not chunk:  # EOF: accept a request without its final newline
            line = bytes(buffer)
            break
        buffer += chunk
    return line if len(line) <= MAX_REQUEST_BYTES else None


def _encode(response: dict[str, Any]) -> bytes:
    def finite(value: Any) -> Any:
        # The wire format is strict JSON: a stray NaN/inf would make the answer unreadable to other tools.
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(response), allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"


async def _serve_connection(hw: SimHardware, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            with trio.fail_after(READ_TIMEOUT_S):
                line = await _read_request(stream)
        except trio.TooSlowError:
            LOG.debug("sim control: client sent no request within %.0f s", READ_TIMEOUT_S)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if line is None:
            response: dict[str, Any] = {
                "ok": False,
                "command": None,
                "errorKind": "badRequest",
                "error": f"request longer than {MAX_REQUEST_BYTES} bytes",
            }
        else:
            response = await handle_line(hw, line)
        with trio.move_on_after(WRITE_TIMEOUT_S):
            try:
                await stream.send_all(_encode(response))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                LOG.debug("sim control: client left before reading its answer")


async def _live_listener_at(path: Path) -> bool:
    """Whether something accepts connections on the socket file at `path` (else it is stale)."""
    probe = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        with trio.move_on_after(1.0):
            await probe.connect(os.fspath(path))
            return True
        return True  # connect hung: a listener exists but is too busy to accept; do not steal its path
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise ControlSocketError(exc.errno, f"cannot probe {path}: {exc.strerror}") from exc
    finally:
        probe.close()


def _existing_socket(path: Path) -> bool:
    """Check `path` before binding: True if a socket file is already there (live or stale).

    Creates the directory; refuses an over-long path and a path taken by something that is not a socket.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ControlSocketError(
            errno.ENAMETOOLONG,
            f"sim socket path {str(path)!r} is longer than {MAX_SOCKET_PATH_BYTES} bytes (AF_UNIX limit); "
            "choose a shorter [hardware] sim_socket",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(errno.EEXIST, f"{path} exists and is not a socket; refusing to replace it")
    return True


async def _prepare_path(path: Path) -> None:
    """Make `path` bindable: directory present, stale socket removed, a live station's socket left alone."""
    if not _existing_socket(path):
        return
    if await _live_listener_at(path):
        raise ControlSocketError(errno.EADDRINUSE, f"another station is already listening on {path}")
    LOG.info("sim control: removing stale socket %s", path)
    os.unlink(path)


def _claim(path: Path) -> int:
    """Restrict the freshly bound socket to owner and group; returns its inode to recognise it later."""
    os.chmod(path, SOCKET_MODE)
    return os.lstat(path).st_ino


class ControlListener:
    """The bound, listening control socket; `close` removes the socket file if it is still ours."""

    def __init__(self, path: Path, sock: trio.socket.SocketType, inode: int) -> None:
        self.path = path
        self._listener = trio.SocketListener(sock)
        self._inode = inode

    async def accept(self) -> trio.SocketStream:
        return await self._listener.accept()

    def close(self) -> None:
        """Stop listening and remove the socket file, unless another station has since put its own there."""
        self._listener.socket.close()
        try:
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            LOG.warning("sim control: could not remove %s: %s", self.path, exc)
        LOG.info("sim control: closed %s", self.path)


async def open_listener(path: Path) -> ControlListener:
    """Bind and listen on `path` (directory created, stale socket replaced, mode 0o660).

    Raises ControlSocketError (or another OSError) before anything is served, so a station that cannot
    offer its control socket fails at start-up with a message naming the path.
    """
    await _prepare_path(path)
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(os.fspath(path))
        inode = _claim(path)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    LOG.info("sim control: listening on %s", path)
    return ControlListener(path, sock, inode)


async def serve(hw: SimHardware, listener: ControlListener) -> None:
    """Answer clients on `listener` until cancelled, one task per connection."""
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: wait for descriptors instead of dying
                LOG.warning("sim control: accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_serve_connection, hw, stream)
