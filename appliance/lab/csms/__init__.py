"""A loopback CSMS built on the `ocpp` library: the independent checker used by tests, `appliance demo` and
the benchmarks. See `server.LoopbackCsms`."""

from .behaviour import utc_now_iso
from .records import ConnectionRecord, RecordedFrame, WireViolation
from .replies import (
    NO_ANSWER,
    CsmsCallError,
    CsmsCallTimeout,
    CsmsError,
    Delayed,
    InvalidCsmsRequest,
    InvalidStationResponse,
    StationCallError,
    StationNotConnected,
)
from .server import ACCEPTED_SUBPROTOCOL, LoopbackCsms

__all__ = [
    "ACCEPTED_SUBPROTOCOL",
    "NO_ANSWER",
    "ConnectionRecord",
    "CsmsCallError",
    "CsmsCallTimeout",
    "CsmsError",
    "Delayed",
    "InvalidCsmsRequest",
    "InvalidStationResponse",
    "LoopbackCsms",
    "RecordedFrame",
    "StationCallError",
    "StationNotConnected",
    "WireViolation",
    "utc_now_iso",
]
