"""Lab equipment: the loopback CSMS, the chaos proxy, the demo, and the torture and power-cut experiments.

None of this is firmware. It exists to exercise the station from outside (tests, `appliance demo`, tools/), and
it may need what a station image must not: `websockets` and the `ocpp` library's Python code (the loopback
CSMS), apsw (the power-cut experiment). Only the `demo` command, tools/ and tests import it;
tests/test_import_fence.py proves that no firmware module does.
"""
