"""Part 4 §5.3 back-off arithmetic."""

import random

from appliance.link.backoff import Backoff, BackoffSettings


def test_doubles_then_repeats_and_resets() -> None:
    backoff = Backoff(lambda: BackoffSettings(wait_minimum=3, random_range=0, repeat_times=2))
    assert [backoff.next_delay() for _ in range(5)] == [3, 6, 12, 12, 12]
    backoff.reset()
    assert backoff.next_delay() == 3


def test_random_part_is_bounded_and_fresh() -> None:
    backoff = Backoff(lambda: BackoffSettings(5, 2, 3), rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    bases = [5, 10, 20, 40, 40, 40]
    assert all(b <= d <= b + 2 for d, b in zip(delays, bases, strict=True))
    assert len({round(d - b, 6) for d, b in zip(delays, bases, strict=True)}) > 1


def test_settings_read_each_time() -> None:
    settings = {"s": BackoffSettings(1, 0, 1)}
    backoff = Backoff(lambda: settings["s"])
    assert backoff.next_delay() == 1
    settings["s"] = BackoffSettings(10, 0, 1)
    assert backoff.next_delay() == 20
