"""The charge controller board's line protocol (documented for board makers in the README, "Serial hardware").

ASCII lines ending in CR LF (LF alone accepted), at most 128 bytes. Board → station:

    ST <evse> cp=<A-F> pp=<amps|-> k=<0|1> f=<-|CODE[,CODE…]>   status of one EVSE: on every change and at
                                                                least once a second (this is its heartbeat)
    SEL <evse>                                                  the user chose this EVSE on the display
    HELLO <text>                                                the board (re)started
    ERR <text>                                                  the board refused a command

Station → board:

    CUR <evse> <amps>   offer up to <amps> per phase: PWM duty per IEC 61851-1 (0 = no PWM, 5 % never)
    CON <evse> <0|1>    close / open the contactor (the board closes only with cp=C or D and no fault)
    HB <n>              the station's heartbeat, every second; a board that hears none for 3 s opens its
                        contactors and stops PWM (its watchdog)

`cp` is the control pilot state (A no EV, B connected, C charging, D charging with ventilation, E pilot
shorted / no power, F the board's own error), `pp` the cable's current rating read from the proximity pin
(`-` for a fixed cable), `k` the contactor's feedback contact, `f` the active faults (RCD, OverTemperature,
OverCurrent, EmergencyStop, ContactorWelded, or any other code of 1-32 letters and digits).

Pure parsing and formatting, shared by the firmware and the lab's board simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE = 128
PILOT_STATES = "ABCDEF"
_CODE = re.compile(r"[A-Za-z0-9]{1,32}")
_TEXT = re.compile(r"[\x20-\x7e]{0,100}")
#: How a board fault ends a transaction (OCPP stoppedReason); anything else ends it with Other.
STOP_REASONS = {"RCD": "GroundFault", "OverCurrent": "OvercurrentFault", "EmergencyStop": "EmergencyStop"}


class ProtocolError(ValueError):
    """A line that is not this protocol (the message says what is wrong; the line itself is not repeated)."""


@dataclass(frozen=True)
class Status:
    evse_id: int
    pilot: str
    cable_a: int | None
    contactor: bool
    faults: tuple[str, ...]


@dataclass(frozen=True)
class Select:
    evse_id: int


@dataclass(frozen=True)
class Hello:
    text: str


@dataclass(frozen=True)
class BoardError:
    text: str


BoardLine = Status | Select | Hello | BoardError


def parse_board_line(raw: bytes) -> BoardLine:
    try:
        line = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ProtocolError("not ASCII") from None
    verb, _, rest = line.partition(" ")
    if verb == "ST":
        return _status(rest.split(" "))
    if verb == "SEL":
        return Select(_evse(rest))
    if verb in ("HELLO", "ERR"):
        if not _TEXT.fullmatch(rest):
            raise ProtocolError(f"{verb}: text is not printable ASCII")
        return Hello(rest) if verb == "HELLO" else BoardError(rest)
    raise ProtocolError("unknown verb" if verb.isalpha() and len(verb) < 8 else "not a protocol line")


def _status(parts: list[str]) -> Status:
    if len(parts) != 5:
        raise ProtocolError(f"ST needs <evse> cp= pp= k= f=, got {len(parts)} fields")
    evse = _evse(parts[0])
    fields = {}
    for part, key in zip(parts[1:], ("cp", "pp", "k", "f"), strict=True):
        name, eq, value = part.partition("=")
        if name != key or not eq:
            raise ProtocolError(f"ST: expected {key}=…")
        fields[key] = value
    pilot = fields["cp"]
    if len(pilot) != 1 or pilot not in PILOT_STATES:
        raise ProtocolError("ST: cp must be one of A-F")
    pp = fields["pp"]
    if pp == "-":
        cable = None
    elif pp.isdigit() and len(pp) <= 3 and 0 <= int(pp) <= 80:
        cable = int(pp)
    else:
        raise ProtocolError("ST: pp must be - or amps 0-80")
    if fields["k"] not in ("0", "1"):
        raise ProtocolError("ST: k must be 0 or 1")
    faults: tuple[str, ...] = ()
    if fields["f"] != "-":
        faults = tuple(fields["f"].split(","))
        if not all(_CODE.fullmatch(code) for code in faults) or len(faults) > 8:
            raise ProtocolError("ST: f must be - or up to 8 codes of 1-32 letters/digits")
    return Status(evse, pilot, cable, fields["k"] == "1", faults)


def _evse(text: str) -> int:
    if not text.isdigit() or len(text) > 2 or not 1 <= int(text) <= 99:
        raise ProtocolError("EVSE must be a number 1-99")
    return int(text)


def format_status(status: Status) -> str:
    pp = "-" if status.cable_a is None else str(status.cable_a)
    faults = ",".join(status.faults) or "-"
    return f"ST {status.evse_id} cp={status.pilot} pp={pp} k={int(status.contactor)} f={faults}"


def format_current(evse_id: int, amps: float) -> str:
    return f"CUR {evse_id} {amps:.1f}"


def format_contactor(evse_id: int, closed: bool) -> str:
    return f"CON {evse_id} {int(closed)}"


def format_heartbeat(seq: int) -> str:
    return f"HB {seq % 1_000_000}"


@dataclass(frozen=True)
class Command:
    """A station → board line, as the board reads it."""

    verb: str  # CUR, CON, HB
    evse_id: int | None
    value: float


def parse_station_line(raw: bytes) -> Command:
    try:
        parts = raw.decode("ascii").strip().split(" ")
    except UnicodeDecodeError:
        raise ProtocolError("not ASCII") from None
    if parts[0] == "HB" and len(parts) == 2 and parts[1].isdigit():
        return Command("HB", None, float(parts[1]))
    if parts[0] in ("CUR", "CON") and len(parts) == 3:
        evse = _evse(parts[1])
        try:
            value = float(parts[2])
        except ValueError:
            raise ProtocolError(f"{parts[0]}: value is not a number") from None
        if parts[0] == "CON" and parts[2] not in ("0", "1"):
            raise ProtocolError("CON: value must be 0 or 1")
        if parts[0] == "CUR" and not 0 <= value <= 80:
            raise ProtocolError("CUR: amps must be 0-80")
        return Command(parts[0], evse, value)
    raise ProtocolError("not a station command")


def pwm_duty_percent(amps: float) -> float:
    """IEC 61851-1 Annex A: the duty cycle that offers `amps` (0 → 100 %, i.e. no PWM: no energy offered)."""
    if amps < 6:
        return 100.0
    if amps <= 51:
        return amps / 0.6
    return min(amps / 2.5 + 64, 96.0)
