"""Modbus register maps of energy meters: where each quantity lives, its encoding and its scale.

A map names, for the four quantities the station reads (import energy register, per-phase voltage and current,
total active power), the register address, the data type and the factor that turns the raw number into Wh,
V, A or W; plus the function code (3 holding / 4 input registers) and the word order of multi-register values.
Two maps are built in, from their datasheets:

* Eastron SDM630 (Modbus protocol v1.5 / "SDM630 Modbus" register list): input registers (function 4), IEEE 754
  float32, high word first. 30001 (0x0000) L1-N voltage V, 0x0002 L2, 0x0004 L3; 30007 (0x0006) L1 current A,
  0x0008 L2, 0x000A L3; 30053 (0x0034) total system power W; 30073 (0x0048) total import active energy kWh.
* ABB B23/B24 (B-series Modbus manual): holding registers (function 3), unsigned/signed integers, high word
  first. 0x5000 active import energy uint64 in 0.01 kWh; 0x5B00/02/04 L1-L3 voltage uint32 in 0.1 V;
  0x5B0C/0E/10 L1-L3 current uint32 in 0.01 A; 0x5B14 total active power int32 in 0.01 W.

Anything else is a custom map from the config (`[hardware.serial.maps.NAME]`, see the README). Decoding is our
own (struct), so it is independent of the Modbus library's helpers and of its version.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: data type → (registers, struct format of its big-endian bytes)
TYPES: dict[str, tuple[int, str]] = {
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "float32": (2, ">f"),
    "int64": (4, ">q"),
    "uint64": (4, ">Q"),
}
WORD_ORDERS = ("big", "little")
FUNCTIONS = {"holding": 3, "input": 4}
#: Most registers one read may ask for (Modbus: 125), and the widest gap a merged read may span.
MAX_READ = 125
MAX_GAP = 48


@dataclass(frozen=True)
class Field:
    """One quantity: `address` (0-based protocol address), `type` (a key of TYPES), raw × `scale` = the unit."""

    address: int
    type: str
    scale: float = 1.0

    @property
    def width(self) -> int:
        return TYPES[self.type][0]

    def decode(self, registers: Sequence[int], word_order: str) -> float:
        words = list(registers)
        if word_order == "little":
            words.reverse()
        raw = struct.unpack(TYPES[self.type][1], b"".join(w.to_bytes(2, "big") for w in words))[0]
        return float(raw) * self.scale

    def encode(self, value: float, word_order: str) -> list[int]:
        """The registers a meter holding `value` (in the unit) shows: for simulators."""
        fmt = TYPES[self.type][1]
        raw = value / self.scale
        packed = struct.pack(fmt, raw if self.type == "float32" else round(raw))
        words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
        if word_order == "little":
            words.reverse()
        return words


@dataclass(frozen=True)
class RawReading:
    """What the registers say, before any plausibility check."""

    energy_wh: float
    power_w: float
    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]


@dataclass(frozen=True)
class RegisterMap:
    name: str
    function: int  # 3 holding registers, 4 input registers
    word_order: str
    energy_wh: Field
    power_w: Field
    voltage_v: tuple[Field, ...]  # L1, L2, L3
    current_a: tuple[Field, ...]

    def fields(self, phases: int) -> list[Field]:
        return [self.energy_wh, self.power_w, *self.voltage_v[:phases], *self.current_a[:phases]]

    def reads(self, phases: int) -> list[tuple[int, int]]:
        """The (address, count) reads that cover every field, neighbours merged into one request."""
        spans = sorted((f.address, f.address + f.width) for f in self.fields(phases))
        reads: list[list[int]] = []
        for start, end in spans:
            if reads and start - reads[-1][1] <= MAX_GAP and max(end, reads[-1][1]) - reads[-1][0] <= MAX_READ:
                reads[-1][1] = max(end, reads[-1][1])
            else:
                reads.append([start, end])
        return [(start, end - start) for start, end in reads]

    def decode(self, registers: Mapping[int, int], phases: int) -> RawReading:
        """Decode from address → register value (every address of `reads(phases)` present)."""

        def value(f: Field) -> float:
            return f.decode([registers[f.address + i] for i in range(f.width)], self.word_order)

        return RawReading(
            energy_wh=value(self.energy_wh),
            power_w=value(self.power_w),
            voltage_v=tuple(value(f) for f in self.voltage_v[:phases]),
            current_a=tuple(value(f) for f in self.current_a[:phases]),
        )


def _float(address: int, scale: float = 1.0) -> Field:
    return Field(address, "float32", scale)


SDM630 = RegisterMap(
    name="sdm630",
    function=4,
    word_order="big",
    energy_wh=_float(0x0048, 1000.0),  # kWh
    power_w=_float(0x0034),
    voltage_v=(_float(0x0000), _float(0x0002), _float(0x0004)),
    current_a=(_float(0x0006), _float(0x0008), _float(0x000A)),
)

B23 = RegisterMap(
    name="b23",
    function=3,
    word_order="big",
    energy_wh=Field(0x5000, "uint64", 10.0),  # 0.01 kWh = 10 Wh
    power_w=Field(0x5B14, "int32", 0.01),
    voltage_v=(Field(0x5B00, "uint32", 0.1), Field(0x5B02, "uint32", 0.1), Field(0x5B04, "uint32", 0.1)),
    current_a=(Field(0x5B0C, "uint32", 0.01), Field(0x5B0E, "uint32", 0.01), Field(0x5B10, "uint32", 0.01)),
)

BUILT_IN: dict[str, RegisterMap] = {m.name: m for m in (SDM630, B23)}
