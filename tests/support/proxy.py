"""The chaos proxy for tests. It lives in the package (`appliance demo` pulls the cable with it too); this is
the name the test suite imports it by."""

from appliance.csms.proxy import ChaosProxy, ProxyStats

__all__ = ["ChaosProxy", "ProxyStats"]
