"""The power-cut experiment on the journal (see experiment.py), shared by tests/powercut and tools/powercut.py.

It needs apsw, which is a test extra (`pip install -e '.[test]'`), not a runtime dependency; this package says
so plainly instead of letting a bare ModuleNotFoundError surface from deep inside the VFS module.
"""

try:
    import apsw  # noqa: F401 - only probed here; the modules import it for themselves
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "the power-cut experiment needs apsw, a test extra: pip install -e '.[test]'", name="apsw"
    ) from exc
