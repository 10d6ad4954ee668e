"""The schema-derived fuzzer (strategies, a live-station driver, the campaign), shared by tests/fuzz (quick) and
tools/fuzz.py (long).

It needs hypothesis, a test extra (`pip install -e '.[test]'`), not a runtime dependency; this package says so
plainly instead of letting a bare ModuleNotFoundError surface from inside a strategy module.
"""

try:
    import hypothesis  # noqa: F401 - only probed here; the modules import it for themselves
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "the fuzzer needs hypothesis, a test extra: pip install -e '.[test]'", name="hypothesis"
    ) from exc
