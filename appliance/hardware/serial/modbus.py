"""One Modbus RTU bus (an RS-485 line with one or more meters), its pymodbus client driven from Trio.

pymodbus' synchronous client blocks on the line, so every request runs in a worker thread; the bus's
CapacityLimiter of one keeps its requests strictly one after another (RS-485 is half duplex, and the client
object is not meant to be shared), and a request abandoned by a timeout still holds the bus until its thread
is done, so the next one never talks over it. Each call has two bounds: the client's own reply timeout
(`timeout_s`, no retries: the poller decides what a failure means) and a Trio deadline around the thread, so
a wedged driver cannot hold the station.

Failures are classified for the log line and the CSMS notification: `no answer` (silent meter, wrong unit id,
wrong speed), `Modbus exception N` (the meter answered, e.g. 2 illegal data address for a wrong map), `port …`
(the adapter is gone or cannot be opened; it is re-opened with back-off).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import trio

from appliance.hardware.serial.ports import Backoff, PortLost
from appliance.hardware.serial.settings import BusSettings

log = logging.getLogger("appliance.hardware.serial")
# pymodbus logs every failed connect and timeout at ERROR itself; the poller logs each failure once, named.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

#: Exception codes of the Modbus application protocol, for log lines.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    11: "gateway target failed to respond",
}


class ModbusFailure(Exception):
    """A request that got no usable answer; `kind` is "no answer", "exception" or "port"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class ModbusBus:
    def __init__(
        self, settings: BusSettings, *, reopen_max_s: float = 30.0, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.settings = settings
        self._limiter = trio.CapacityLimiter(1)
        self._client: Any = None  # a pymodbus client, touched only under the limiter (in its worker thread)
        self._backoff = Backoff(maximum=reopen_max_s)
        self._closed_until = 0.0
        self._clock = clock
        self._unanswered = 0  # requests in a row that got no answer, from any unit
        self._port_problem = ""

    async def read(self, unit: int, function: int, address: int, count: int) -> list[int]:
        """`count` registers from `address` of meter `unit` (function 3 or 4); ModbusFailure otherwise."""
        now = self._clock()
        if self._client is None and now < self._closed_until:
            raise ModbusFailure("port", f"{self._port_problem} (next attempt in {self._closed_until - now:.1f} s)")
        deadline = self.settings.timeout_s * 2 + 2.0
        with trio.move_on_after(deadline):
            try:
                registers = await trio.to_thread.run_sync(
                    self._read_blocking, unit, function, address, count, limiter=self._limiter, abandon_on_cancel=True
                )
            except PortLost as exc:
                self._closed_until = self._clock() + self._backoff.next_delay()
                self._port_problem = str(exc)
                raise ModbusFailure("port", str(exc)) from None
            except ModbusFailure as exc:
                if exc.kind == "no answer":
                    self._silence()
                raise
            self._backoff.reset()
            self._unanswered = 0
            return registers
        self._silence()
        raise ModbusFailure("no answer", f"request to unit {unit} still running after {deadline:g} s")

    def _silence(self) -> None:
        """A vanished adapter often just stops answering (writes to a hung-up pty or USB device can still
        succeed): when nothing on the bus answered twice in a row, open the port afresh for the next request,
        which then finds the device again, or finds it gone. One silent meter among answering ones never
        triggers this."""
        self._unanswered += 1
        if self._unanswered >= 2 and self._client is not None:
            self._unanswered = 0
            self.close()

    def close(self) -> None:
        """Close the port (at shutdown). Safe while a request is still running: it fails, harmlessly."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ---------------------------------------------------------------------------------- worker thread

    def _read_blocking(self, unit: int, function: int, address: int, count: int) -> list[int]:
        from pymodbus import ModbusException
        from pymodbus.exceptions import ConnectionException
        from pymodbus.pdu import ExceptionResponse

        client = self._client or self._connect()
        call = client.read_holding_registers if function == 3 else client.read_input_registers
        try:
            answer = call(address, count=count, slave=unit)
        except ConnectionException as exc:
            self._drop(client)
            raise PortLost(f"{self.settings.port.url} disappeared: {_first_line(exc)}") from None
        except ModbusException:
            if not client.is_socket_open():
                self._drop(client)
                raise PortLost(f"{self.settings.port.url} disappeared") from None
            raise ModbusFailure(
                "no answer", f"unit {unit} did not answer within {self.settings.timeout_s:g} s"
            ) from None
        except (OSError, ValueError, TypeError) as exc:  # pyserial on a vanished device
            self._drop(client)
            raise PortLost(f"{self.settings.port.url} disappeared: {_first_line(exc)}") from None
        if isinstance(answer, ExceptionResponse) or answer.isError():
            code = getattr(answer, "exception_code", 0)
            raise ModbusFailure(
                "exception",
                f"unit {unit} answered Modbus exception {code} "
                f"({EXCEPTION_NAMES.get(code, 'unknown')}) for {count} registers at {address:#06x}",
            )
        registers = list(answer.registers)
        if len(registers) != count:
            raise ModbusFailure("no answer", f"unit {unit} sent {len(registers)} registers, asked for {count}")
        return registers

    def _connect(self) -> Any:
        """A connected client: RTU on a serial line, or RTU framing over TCP for `socket://HOST:PORT` (an RTU
        gateway; pymodbus' serial client polls a socket byte by byte, ~0.4 s per request)."""
        from pymodbus import FramerType
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        port = self.settings.port
        client: ModbusSerialClient | ModbusTcpClient
        if port.url.startswith("socket://"):
            host, _, number = port.url.removeprefix("socket://").rpartition(":")
            client = ModbusTcpClient(
                host, port=int(number), framer=FramerType.RTU, timeout=self.settings.timeout_s, retries=0
            )
        else:
            client = ModbusSerialClient(
                port.url,
                baudrate=port.baudrate,
                parity=port.parity,
                stopbits=port.stopbits,
                bytesize=port.bytesize,
                timeout=self.settings.timeout_s,
                retries=0,
            )
        if not client.connect():
            raise PortLost(f"cannot open {port.url}")
        self._client = client
        return client

    def _drop(self, client: Any) -> None:
        if self._client is client:
            self._client = None
        with contextlib.suppress(Exception):  # closing a dead port may fail in any way; it is gone either way
            client.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:160]
