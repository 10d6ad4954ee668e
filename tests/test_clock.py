from datetime import UTC, datetime

from appliance.clock import StationClock, format_iso, parse_iso


def test_format_has_z_and_millis() -> None:
    assert format_iso(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"


async def test_adjust_follows_csms() -> None:
    clock = StationClock()
    jump = await clock.adjust("2040-01-01T00:00:00Z")
    assert jump > 100_000_000
    assert clock.iso().startswith("2040-01-01T00:00:0")


async def test_bad_time_ignored() -> None:
    clock = StationClock()
    assert await clock.adjust("yesterday") == 0.0
    assert clock.offset == 0.0


def test_parse_offsets() -> None:
    assert parse_iso("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
