"""The SDM630 and B23 decoders against register values computed from the datasheets' formulas, the read
planning, the plausibility checks, and the controller's line protocol."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import pytest

from appliance.hardware.base import EvseLayout
from appliance.hardware.serial import line_protocol as lp
from appliance.hardware.serial.meters import Implausible, Sample, check_reading
from appliance.hardware.serial.registers import B23, SDM630, Field, RawReading, RegisterMap


def float32_words(value: float) -> list[int]:
    """SDM630: IEEE 754 single precision, the high word in the lower register."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def sdm630_registers(volts: tuple[float, ...], amps: tuple[float, ...], watts: float, kwh: float) -> dict[int, int]:
    regs = dict.fromkeys(range(0, 0x4A), 0)
    for i, v in enumerate(volts):
        regs[2 * i], regs[2 * i + 1] = float32_words(v)  # 30001/3/5: Phase 1-3 line to neutral volts
    for i, a in enumerate(amps):
        regs[6 + 2 * i], regs[7 + 2 * i] = float32_words(a)  # 30007/9/11: Phase 1-3 current
    regs[0x34], regs[0x35] = float32_words(watts)  # 30053: total system power
    regs[0x48], regs[0x49] = float32_words(kwh)  # 30073: total import kWh
    return regs


def test_sdm630_known_words() -> None:
    # 230.0 V is 0x43660000; 12.345 kWh is 0x4145851F in IEEE 754.
    regs = sdm630_registers((230.0, 231.5, 229.25), (16.0, 15.5, 0.0), 7300.5, 12.345)
    assert [regs[0], regs[1]] == [0x4366, 0x0000] and [regs[0x48], regs[0x49]] == [0x4145, 0x851F]
    raw = SDM630.decode(regs, 3)
    assert raw.voltage_v == (230.0, 231.5, 229.25) and raw.current_a == (16.0, 15.5, 0.0)
    assert raw.power_w == 7300.5
    assert raw.energy_wh == pytest.approx(12345.0, abs=0.001)  # float32 kWh: ~1 mWh resolution at 12 kWh


def test_b23_known_words() -> None:
    regs = dict.fromkeys(range(0x5B00, 0x5B1C), 0) | dict.fromkeys(range(0x5000, 0x5004), 0)
    # 0x5000: active import energy, uint64 × 0.01 kWh; 12345.67 kWh = 1234567 = 0x0012D687.
    regs[0x5002], regs[0x5003] = 0x0012, 0xD687
    # 0x5B00…: voltage L1-L3 uint32 × 0.1 V; 0x5B0C…: current L1-L3 uint32 × 0.01 A.
    for i, (deci_volts, centi_amps) in enumerate(((2301, 1023), (2298, 1000), (2310, 5))):
        regs[0x5B01 + 2 * i] = deci_volts
        regs[0x5B0D + 2 * i] = centi_amps
    # 0x5B14: total active power int32 × 0.01 W; -1.50 W is -150 = 0xFFFFFF6A two's complement.
    regs[0x5B14], regs[0x5B15] = 0xFFFF, 0xFF6A
    raw = B23.decode(regs, 3)
    assert raw.energy_wh == pytest.approx(12_345_670.0)
    assert raw.voltage_v == pytest.approx((230.1, 229.8, 231.0))
    assert raw.current_a == pytest.approx((10.23, 10.0, 0.05))
    assert raw.power_w == pytest.approx(-1.5)
    big = B23.energy_wh.decode([0x0001, 0x0000, 0x0000, 0x0000], "big")  # 2**48 × 10 Wh
    assert big == 10.0 * 2**48


@pytest.mark.parametrize("regmap", [SDM630, B23], ids=lambda m: m.name)
@pytest.mark.parametrize("phases", [1, 3])
def test_encode_decode_round_trip_within_the_maps_resolution(regmap: RegisterMap, phases: int) -> None:
    raw = RawReading(98765.43, 7123.45, (229.6, 230.6, 231.3)[:phases], (10.16, 10.11, 10.08)[:phases])
    regs: dict[int, int] = {}
    for f, value in [
        (regmap.energy_wh, raw.energy_wh),
        (regmap.power_w, raw.power_w),
        *zip(regmap.voltage_v, raw.voltage_v, strict=False),
        *zip(regmap.current_a, raw.current_a, strict=False),
    ]:
        regs.update(zip(range(f.address, f.address + f.width), f.encode(value, regmap.word_order), strict=True))
    back = regmap.decode(regs, phases)
    tolerance = {"sdm630": (0.01, 0.001, 0.0001), "b23": (5.0, 0.05, 0.005)}[regmap.name]
    assert back.energy_wh == pytest.approx(raw.energy_wh, abs=tolerance[0])
    assert back.voltage_v == pytest.approx(raw.voltage_v, abs=tolerance[1])
    assert back.current_a == pytest.approx(raw.current_a, abs=tolerance[2])


def test_reads_are_merged_into_few_requests() -> None:
    assert SDM630.reads(3) == [(0x0000, 0x4A)]
    assert B23.reads(3) == [(0x5000, 4), (0x5B00, 0x16)]
    assert B23.reads(1) == [(0x5000, 4), (0x5B00, 0x16)]  # L1 voltage … total power
    assert all(count <= 125 for _, count in SDM630.reads(3) + B23.reads(3))


def test_little_word_order_and_integer_types() -> None:
    f = Field(10, "int32", 0.001)
    assert f.decode([0xFFFF, 0xFFFE][::-1], "little") == pytest.approx(-0.002)
    assert Field(0, "uint16", 0.5).decode([7], "big") == 3.5
    assert Field(0, "int64", 1.0).decode(Field(0, "int64", 1.0).encode(-5, "little"), "little") == -5


LAYOUT = EvseLayout(1, phases=3, max_current_a=32, nominal_voltage_v=230)


def _sample(energy: float, at: float) -> Sample:
    return Sample(RawReading(energy, 0.0, (230.0,) * 3, (0.0,) * 3), at, datetime.now(UTC))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (RawReading(100.0, 0.0, (230.0, 230.0, 1e9), (0.0,) * 3), "L3 voltage"),
        (RawReading(100.0, 0.0, (230.0,) * 3, (0.0, -3.0, 0.0)), "L2 current"),
        (RawReading(100.0, 40000.0, (230.0,) * 3, (0.0,) * 3), "power"),
        (RawReading(math.nan, 0.0, (230.0,) * 3, (0.0,) * 3), "finite"),
        (RawReading(-1.0, 0.0, (230.0,) * 3, (0.0,) * 3), "negative"),
        (RawReading(999.0, 0.0, (230.0,) * 3, (0.0,) * 3), "backwards"),
        (RawReading(1100.0, 0.0, (230.0,) * 3, (0.0,) * 3), "jumped"),
    ],
)
def test_impossible_readings_are_refused(raw: RawReading, problem: str) -> None:
    with pytest.raises(Implausible, match=problem):
        check_reading(raw, LAYOUT, _sample(1000.0, 10.0), 11.0)


def test_possible_readings_pass() -> None:
    # 22 kW for 10 s is 61 Wh: possible.
    check_reading(RawReading(1061.0, 22000.0, (231.0,) * 3, (31.9,) * 3), LAYOUT, _sample(1000.0, 10.0), 20.0)


def test_line_protocol() -> None:
    status = lp.parse_board_line(b"ST 2 cp=C pp=20 k=1 f=RCD,OverTemperature")
    assert status == lp.Status(2, "C", 20, True, ("RCD", "OverTemperature"))
    assert lp.format_status(status) == "ST 2 cp=C pp=20 k=1 f=RCD,OverTemperature"
    assert lp.parse_board_line(b"ST 1 cp=A pp=- k=0 f=-") == lp.Status(1, "A", None, False, ())
    assert lp.parse_board_line(b"SEL 1") == lp.Select(1)
    for bad in (
        b"ST 1 cp=G pp=- k=0 f=-",
        b"ST 1 cp=A",
        b"ST 0 cp=A pp=- k=0 f=-",
        b"\xff\xfe",
        b"ST 1 cp=A pp=- k=2 f=-",
        b"ST 1 cp=A pp=99 k=0 f=-",
        b"ST 1 cp=A pp=- k=0 f=bad code",
        b"XYZZY",
        b"",
    ):
        with pytest.raises(lp.ProtocolError):
            lp.parse_board_line(bad)
    assert lp.parse_station_line(b"CUR 1 16.0") == lp.Command("CUR", 1, 16.0)
    assert lp.format_current(1, 16) == "CUR 1 16.0" and lp.format_contactor(2, True) == "CON 2 1"
    assert lp.pwm_duty_percent(16) == pytest.approx(26.667, abs=0.001) and lp.pwm_duty_percent(0) == 100.0
    assert lp.pwm_duty_percent(63) == pytest.approx(89.2)
