"""The settings the station reads, named once with their type, and the typed reader over the device model.

A device-model value is an `object` to the type checker (int, float, bool, str, a member list or nothing,
depending on the variable's dataType); every reader used to cast it where it read it. Here each setting the
firmware acts on is a constant whose class says what it holds (`Integer`, `Flag`, `Seconds`, `Members`, `Text`),
and `Settings` has one accessor per class, so mypy sees the right type at the call site and a setting read as
the wrong kind is a type error. tests/devicemodel/test_settings.py checks every constant against the catalog
(the variable exists, its dataType is the one the class expects), once, instead of at each read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Key:
    """A device-model path (`Component.Variable[instance]`) the station reads."""

    path: str


class Integer(Key):
    """dataType integer: a count or a size."""


class Flag(Key):
    """dataType boolean."""


class Seconds(Key):
    """dataType integer or decimal, in seconds."""


class Number(Key):
    """dataType decimal or integer: a quantity that is not a time (a percentage, a current)."""


class Members(Key):
    """dataType MemberList or SequenceList: the members in order."""


class Text(Key):
    """dataType string; None when it has no value."""


class SettingError(TypeError):
    """A value of another type than its constant says: a catalog or provider bug, not bad input."""


class Settings:
    """Typed reads through `get(path) -> object` (the device model's `get`, or a dict's in a test)."""

    def __init__(self, get: Callable[[str], object]) -> None:
        self._get = get

    def integer(self, key: Integer) -> int:
        value = self._get(key.path)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"{key.path}: {value!r} is not an integer")
        return value

    def flag(self, key: Flag) -> bool:
        value = self._get(key.path)
        if not isinstance(value, bool):
            raise SettingError(f"{key.path}: {value!r} is not a boolean")
        return value

    def seconds(self, key: Seconds) -> float:
        value = self._get(key.path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingError(f"{key.path}: {value!r} is not a number of seconds")
        return float(value)

    def number(self, key: Number) -> float:
        value = self._get(key.path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingError(f"{key.path}: {value!r} is not a number")
        return float(value)

    def members(self, key: Members) -> tuple[str, ...]:
        value = self._get(key.path)
        if not isinstance(value, list | tuple) or not all(isinstance(member, str) for member in value):
            raise SettingError(f"{key.path}: {value!r} is not a member list")
        return tuple(value)

    def text(self, key: Text) -> str | None:
        value = self._get(key.path)
        if value is not None and not isinstance(value, str):
            raise SettingError(f"{key.path}: {value!r} is not a string")
        return value


# --- OCPPCommCtrlr -------------------------------------------------------------------------------------
HEARTBEAT_INTERVAL = Seconds("OCPPCommCtrlr.HeartbeatInterval")
MESSAGE_TIMEOUT = Seconds("OCPPCommCtrlr.MessageTimeout[Default]")
WEBSOCKET_PING_INTERVAL = Seconds("OCPPCommCtrlr.WebSocketPingInterval")
OFFLINE_THRESHOLD = Seconds("OCPPCommCtrlr.OfflineThreshold")
RETRY_BACKOFF_WAIT_MINIMUM = Seconds("OCPPCommCtrlr.RetryBackOffWaitMinimum")
RETRY_BACKOFF_RANDOM_RANGE = Seconds("OCPPCommCtrlr.RetryBackOffRandomRange")
RETRY_BACKOFF_REPEAT_TIMES = Integer("OCPPCommCtrlr.RetryBackOffRepeatTimes")
TX_MESSAGE_ATTEMPTS = Integer("OCPPCommCtrlr.MessageAttempts[TransactionEvent]")
TX_MESSAGE_ATTEMPT_INTERVAL = Seconds("OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]")
NETWORK_CONFIGURATION_PRIORITY = Text("OCPPCommCtrlr.NetworkConfigurationPriority")
NETWORK_PROFILE_CONNECTION_ATTEMPTS = Integer("OCPPCommCtrlr.NetworkProfileConnectionAttempts")

# --- ClockCtrlr ----------------------------------------------------------------------------------------
TIME_ADJUSTMENT_REPORTING_THRESHOLD = Seconds("ClockCtrlr.TimeAdjustmentReportingThreshold")

# --- SecurityCtrlr -------------------------------------------------------------------------------------
BASIC_AUTH_PASSWORD = Text("SecurityCtrlr.BasicAuthPassword")
SECURITY_PROFILE = Integer("SecurityCtrlr.SecurityProfile")
ORGANIZATION_NAME = Text("SecurityCtrlr.OrganizationName")
CERT_SIGNING_REPEAT_TIMES = Integer("SecurityCtrlr.CertSigningRepeatTimes")
CERT_SIGNING_WAIT_MINIMUM = Seconds("SecurityCtrlr.CertSigningWaitMinimum")
MAX_CERTIFICATE_CHAIN_SIZE = Integer("SecurityCtrlr.MaxCertificateChainSize")

# --- SmartChargingCtrlr --------------------------------------------------------------------------------
SMART_CHARGING_ENABLED = Flag("SmartChargingCtrlr.Enabled")
RATE_UNIT = Members("SmartChargingCtrlr.RateUnit")
PROFILE_STACK_LEVEL = Integer("SmartChargingCtrlr.ProfileStackLevel")
PERIODS_PER_SCHEDULE = Integer("SmartChargingCtrlr.PeriodsPerSchedule")
EXTERNAL_CONTROL_SIGNALS_ENABLED = Flag("SmartChargingCtrlr.ExternalControlSignalsEnabled")
LIMIT_CHANGE_SIGNIFICANCE = Number("SmartChargingCtrlr.LimitChangeSignificance")

# --- ChargingStation -----------------------------------------------------------------------------------
ALLOW_NEW_SESSIONS_PENDING_FIRMWARE_UPDATE = Flag("ChargingStation.AllowNewSessionsPendingFirmwareUpdate")

# --- DeviceDataCtrlr -----------------------------------------------------------------------------------
#: The requests DeviceDataCtrlr.ItemsPerMessage / BytesPerMessage have an instance for.
DEVICE_DATA_REQUESTS = ("GetReport", "GetVariables", "SetVariables")
VALUE_SIZE = Integer("DeviceDataCtrlr.ValueSize")
REPORTING_VALUE_SIZE = Integer("DeviceDataCtrlr.ReportingValueSize")
CONFIGURATION_VALUE_SIZE = Integer("DeviceDataCtrlr.ConfigurationValueSize")


@functools.cache  # read on every GetVariables/SetVariables request
def items_per_message(request: str) -> Integer:
    """DeviceDataCtrlr.ItemsPerMessage for one of DEVICE_DATA_REQUESTS."""
    return Integer(f"DeviceDataCtrlr.ItemsPerMessage[{request}]")


@functools.cache
def bytes_per_message(request: str) -> Integer:
    """DeviceDataCtrlr.BytesPerMessage for one of DEVICE_DATA_REQUESTS."""
    return Integer(f"DeviceDataCtrlr.BytesPerMessage[{request}]")


# --- authorization -------------------------------------------------------------------------------------
AUTHORIZE_REMOTE_START = Flag("AuthCtrlr.AuthorizeRemoteStart")
LOCAL_AUTHORIZE_OFFLINE = Flag("AuthCtrlr.LocalAuthorizeOffline")
LOCAL_PRE_AUTHORIZE = Flag("AuthCtrlr.LocalPreAuthorize")
AUTH_CACHE_ENABLED = Flag("AuthCacheCtrlr.Enabled")
AUTH_CACHE_LIFE_TIME = Seconds("AuthCacheCtrlr.LifeTime")
AUTH_CACHE_DISABLE_POST_AUTHORIZE = Flag("AuthCacheCtrlr.DisablePostAuthorize")
LOCAL_LIST_ENABLED = Flag("LocalAuthListCtrlr.Enabled")
LOCAL_LIST_DISABLE_POST_AUTHORIZE = Flag("LocalAuthListCtrlr.DisablePostAuthorize")
LOCAL_LIST_ITEMS_PER_MESSAGE = Integer("LocalAuthListCtrlr.ItemsPerMessage")
LOCAL_LIST_BYTES_PER_MESSAGE = Integer("LocalAuthListCtrlr.BytesPerMessage")

# --- transactions and meter values ---------------------------------------------------------------------
TX_START_POINT = Members("TxCtrlr.TxStartPoint")
TX_STOP_POINT = Members("TxCtrlr.TxStopPoint")
STOP_TX_ON_INVALID_ID = Flag("TxCtrlr.StopTxOnInvalidId")
EV_CONNECTION_TIMEOUT = Seconds("TxCtrlr.EVConnectionTimeOut")
TX_STARTED_MEASURANDS = Members("SampledDataCtrlr.TxStartedMeasurands")
TX_UPDATED_MEASURANDS = Members("SampledDataCtrlr.TxUpdatedMeasurands")
TX_ENDED_MEASURANDS = Members("SampledDataCtrlr.TxEndedMeasurands")
TX_UPDATED_INTERVAL = Seconds("SampledDataCtrlr.TxUpdatedInterval")
TX_ENDED_INTERVAL = Seconds("SampledDataCtrlr.TxEndedInterval")
ALIGNED_MEASURANDS = Members("AlignedDataCtrlr.Measurands")
ALIGNED_TX_ENDED_MEASURANDS = Members("AlignedDataCtrlr.TxEndedMeasurands")
ALIGNED_INTERVAL = Seconds("AlignedDataCtrlr.Interval")
ALIGNED_TX_ENDED_INTERVAL = Seconds("AlignedDataCtrlr.TxEndedInterval")
ALIGNED_SEND_DURING_IDLE = Flag("AlignedDataCtrlr.SendDuringIdle")
