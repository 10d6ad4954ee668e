"""Meter readings as OCPP MeterValueType: the six measurands this station reports, with phases and units.

Units are always explicit (the schema's default unit is Wh, which would be wrong for A, V and W). Per-phase
measurands (Current.Import, Voltage) carry one sampled value per phase in use; totals carry none, which is
what the CSMS and `appliance-journal verify` read as "the register".
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.hardware.base import MeterReading

_PHASES = ("L1", "L2", "L3")
_VOLTAGE_PHASES = ("L1-N", "L2-N", "L3-N")


def _sample(value: float, measurand: str, context: str, unit: str, phase: str | None = None) -> dict:
    sample = {
        "value": round(value, 3),
        "context": context,
        "measurand": measurand,
        "location": "Outlet",
        "unitOfMeasure": {"unit": unit},
    }
    if phase is not None:
        sample["phase"] = phase
    return sample


def sampled_values(reading: MeterReading, measurands: Iterable[str], context: str) -> list[dict]:
    samples: list[dict] = []
    voltage = sum(reading.voltage_v) / len(reading.voltage_v) if reading.voltage_v else 230.0
    for measurand in measurands:
        if measurand == "Energy.Active.Import.Register":
            samples.append(_sample(reading.energy_wh, measurand, context, "Wh"))
        elif measurand == "Power.Active.Import":
            samples.append(_sample(reading.power_w, measurand, context, "W"))
        elif measurand == "Power.Offered":
            offered = reading.offered_current_a * reading.phases * voltage
            samples.append(_sample(offered, measurand, context, "W"))
        elif measurand == "Current.Offered":
            samples.append(_sample(reading.offered_current_a, measurand, context, "A"))
        elif measurand == "Current.Import":
            for phase, amps in zip(_PHASES, reading.current_a, strict=False):
                samples.append(_sample(amps, measurand, context, "A", phase))
        elif measurand == "Voltage":
            for phase, volts in zip(_VOLTAGE_PHASES, reading.voltage_v, strict=False):
                samples.append(_sample(volts, measurand, context, "V", phase))
    return samples


def meter_value(timestamp: str, reading: MeterReading, measurands: Iterable[str], context: str) -> dict | None:
    """One MeterValueType, or None when no measurand is configured (the schema needs ≥ 1 sampled value)."""
    samples = sampled_values(reading, measurands, context)
    if not samples:
        return None
    return {"timestamp": timestamp, "sampledValue": samples}
