"""A loopback CSMS built on the `ocpp` library: the independent checker used by tests, `appliance demo` and
the benchmarks. See `server.LoopbackCsms`."""

from .behaviour import utc_now_iso
from .proxy import ChaosProxy, ProxyStats
from .records import ConnectionRecord, RecordedFrame, Violation
from .replies import (
    NO_ANSWER,
    CallErrorReply,
    CallTimeout,
    CsmsError,
    Delayed,
    InvalidCsmsRequest,
    InvalidStationResponse,
    StationCallError,
    StationNotConnected,
)
from .server import SUBPROTOCOL, LoopbackCsms

__all__ = [
    "NO_ANSWER",
    "SUBPROTOCOL",
    "CallErrorReply",
    "CallTimeout",
    "ChaosProxy",
    "ConnectionRecord",
    "CsmsError",
    "Delayed",
    "InvalidCsmsRequest",
    "InvalidStationResponse",
    "LoopbackCsms",
    "ProxyStats",
    "RecordedFrame",
    "StationCallError",
    "StationNotConnected",
    "Violation",
    "utc_now_iso",
]
