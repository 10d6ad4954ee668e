"""The client of `appliance sim [--socket PATH | --config PATH] COMMAND …`: one request, one JSON answer.

The main CLI resolves `--socket`/`--config` to the socket path, lets `add_arguments` describe the commands,
and calls `run`. It is deliberately plain blocking sockets with a deadline: it is a short-lived command, and
it must work from a thread of a Trio test as well as from a shell script.

Output: the station's answer as one JSON object on one line on stdout. A refused command also prints its
JSON answer (``"ok": false``) on stdout, for scripts, and a readable message on stderr.

Exit codes:

* 0 - done; the answer is on stdout.
* 1 - the station refused the command (unknown EVSE, unplug with nothing plugged, bad watts, bad token …).
* 2 - bad command line (argparse's usage error; `run` itself never returns it).
* 3 - no station to talk to: the socket file is missing, nobody listens on it (a stale socket), it is not a
  socket, permission is denied, or its path is too long for AF_UNIX.
* 4 - a station accepted the connection but gave no valid answer within the timeout (`--timeout`, default
  10 s). The command may still take effect: a station that is not reading hardware events makes commands
  wait for room rather than dropping them.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NO_ANSWER = 4

DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 1 << 20


class Unreachable(Exception):
    """No station is listening on the socket (exit 3)."""


class NoAnswer(Exception):
    """A station is there but did not answer properly in time (exit 4)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--timeout` and the COMMAND subparsers (dest ``sim_command``) to the `appliance sim` parser.

    Each command's parser is its own `usage_parser` default, so stray arguments are reported with its usage.
    """
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the station's answer (default {DEFAULT_TIMEOUT_S:g})",
    )
    commands = parser.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)

    def evse_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("evse", type=int, metavar="EVSE", help="EVSE id (1, 2, …)")
        return sub

    evse_command("plug", "an EV is connected to the EVSE's cable (IEC 61851 state B)")
    charge = evse_command("charge", "the EV asks for energy (state C); again while charging: change its wish")
    charge.add_argument("--watts", type=float, metavar="W", help="the most the EV draws (default: all the EVSE offers)")
    evse_command("suspend", "the EV stops drawing energy but stays connected (state B)")
    evse_command("unplug", "the EV is disconnected (state A), also while charging")
    tap = commands.add_parser(
        "tap",
        help="an ISO 14443 RFID card is presented",
        description="an ISO 14443 RFID card is presented (usually its hex UID)",
    )
    tap.add_argument("token", metavar="TOKEN", help="the card's id token (1-36 printable characters)")
    tap.add_argument("--evse", type=int, metavar="EVSE", help="the EVSE selected on the display first")
    fault = evse_command("fault", "a hardware fault appears on the EVSE (no energy flows until cleared)")
    fault.add_argument("code", nargs="?", metavar="CODE", help="fault code (default SimulatedFault)")
    evse_command("clear", "the EVSE's hardware fault clears")
    evse_command("silence", "the EVSE's controller stops answering (the station reports it Faulted)")
    evse_command("revive", "the EVSE's silent controller answers again")
    commands.add_parser(
        "status",
        help="every EVSE: connector status, EV state, token, transaction, energy",
        description="every EVSE (it takes no EVSE): connector status, EV state, authorized "
        "token, transaction id, energy, power, fault, silent controller, offered "
        "current",
    )
    parser.set_defaults(usage_parser=parser)
    for sub in commands.choices.values():
        sub.set_defaults(usage_parser=sub)


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request object for the parsed command line (the wire format is in appliance.hardware.sim.control)."""
    command = args.sim_command
    request: dict[str, Any] = {"command": command}
    if command == "tap":
        request["token"] = args.token
        request["evse"] = args.evse
    elif command != "status":
        request["evse"] = args.evse
    if command == "charge" and args.watts is not None:
        request["watts"] = args.watts
    if command == "fault" and args.code is not None:
        request["code"] = args.code
    return request


def _connect(sock: socket.socket, where: str, deadline: float) -> None:
    """Connect, retrying while the station's listen backlog is full (EAGAIN) until the deadline."""
    while True:
        try:
            sock.connect(where)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            time.sleep(0.01)


def send_request(socket_path: Path, request: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request and return the station's answer; raises Unreachable or NoAnswer."""
    deadline = time.monotonic() + timeout
    where = str(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            _connect(sock, where, deadline)
        except FileNotFoundError:
            raise Unreachable(
                f"no station socket at {where} (is `appliance run` running with the sim "
                "backend, and is this the right --socket/--config?)"
            ) from None
        except ConnectionRefusedError:
            raise Unreachable(f"nothing is listening on {where} (a stale socket: the station is not running)") from None
        except PermissionError:
            raise Unreachable(
                f"permission denied on {where} (the socket is for the station's user and group)"
            ) from None
        except TimeoutError:
            raise NoAnswer(f"the station at {where} did not accept the connection within {timeout:g} s") from None
        except OSError as exc:  # ENOTSOCK, AF_UNIX path too long, …: there is no station to talk to here
            raise Unreachable(f"cannot connect to {where}: {exc.strerror or exc}") from None
        data = json.dumps(request).encode("utf-8") + b"\n"
        answer = bytearray()
        try:
            sock.sendall(data)
            while b"\n" not in answer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if len(answer) > MAX_RESPONSE_BYTES:
                    raise NoAnswer(f"the station at {where} sent an oversized answer")
        except TimeoutError:
            raise NoAnswer(
                f"the station at {where} did not answer within {timeout:g} s (busy, or not "
                "reading hardware events; the command may still take effect)"
            ) from None
        except OSError as exc:
            raise NoAnswer(f"the connection to {where} failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    line = bytes(answer).split(b"\n", 1)[0]
    try:
        response = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NoAnswer(f"the station at {where} sent no valid answer ({len(line)} bytes)") from None
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        raise NoAnswer(f"the station at {where} sent an answer without 'ok'")
    return response


def run(socket_path: Path, args: argparse.Namespace) -> int:
    """Carry out the parsed `appliance sim` command against the station at `socket_path`; the exit code."""
    timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S
    try:
        response = send_request(Path(socket_path), build_request(args), timeout)
    except Unreachable as exc:
        print(f"appliance sim: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except NoAnswer as exc:
        print(f"appliance sim: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    print(json.dumps(response, separators=(",", ":")))
    if response["ok"]:
        return EXIT_OK
    print(f"appliance sim: {args.sim_command} refused: {response.get('error', 'no reason given')}", file=sys.stderr)
    return EXIT_REFUSED
