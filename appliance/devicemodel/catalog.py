"""What this station's device model contains: one table row per variable.

Sources: the Part 2 appendix (dm_components_vars.csv: Required column, dataType, unit; the component
descriptions, e.g. "for an EVSE with only fixed cables, [UnlockOnEVSideDisconnect's] mutability SHALL be
ReadOnly and the actual value SHALL be false"), the requirements digest §5, and the certified station's
settings (ItemsPerMessage 1/10/1, BytesPerMessage 1000, local list of 10).

Every required variable of the Core components is here, plus the optional ones a feature of this station
uses. Mutability follows what the station implements: a setting the firmware cannot act on is ReadOnly (e.g.
QueueAllMessages, whose only supported value is false), so a CSMS is never told a change was applied when it
was not. The station maker may still set ReadOnly values through the config's `[variables]`.

Defaults (the "certified station" column) are Python values here and canonicalised through `values`, so a
default the characteristics refuse fails at start-up (and in the tests), never at a CSMS's Get.

Choices where neither the spec nor the certified station fixes a value:

* HeartbeatInterval 60 s (the CONTRACT's example; an accepted BootNotification replaces it anyway).
* SampledDataCtrlr.TxEndedInterval 0 (start and end readings only) so an Ended message stays small under
  BytesPerMessage-sized CSMS limits; all six measurands for Started/Updated/Ended, TxUpdatedInterval 60 s.
* AlignedDataCtrlr: Interval 900 s, Measurands and TxEndedMeasurands the energy register only (a billing
  reading every quarter hour), TxEndedInterval 0, SendDuringIdle false.
* TxStartPoint/TxStopPoint valuesList EVConnected, Authorized, PowerPathClosed, EnergyTransfer (no parking
  bay sensor, no signed meter data), default EVConnected,Authorized for both, never empty.
* AuthCtrlr: AuthorizeRemoteStart, LocalAuthorizeOffline, LocalPreAuthorize true; AuthCacheCtrlr.LifeTime
  one day, Policy LRU only.
* EVSE.Power: Actual (ReadOnly, live, not persistent) and MaxSet (ReadOnly maker setting, default and
  maxLimit = the layout's phases × max current × nominal voltage).
* ActiveNetworkProfile is an integer (the appendix text; the CSV says string); NetworkConfigurationPriority
  stays a string (CSV and text agree) checked to be a comma-separated list of slot numbers.
* PhaseRotation (ChargingStation and each EVSE, Part 2 appendix 3.2.11/3.2.30): ReadWrite, persisted, default
  "" (not known) — the station maker declares the wiring in `[variables]`, e.g.
  `"ChargingStation.PhaseRotation" = "RST"`; the values a component can have follow its supply phases.
* Absent on purpose: AuthCtrlr.OfflineTxForUnknownIdEnabled and TxCtrlr.MaxEnergyOnInvalidId. Both are optional
  (Required "no") and their presence declares a feature ("If this key exists, the Charging Station supports
  Unknown Offline Authorization"; Part 6 TC_C_15/C_18 run when MaxEnergyOnInvalidId "is implemented"); this
  station supports neither: offline it refuses unknown idTokens, and a deauthorized transaction gets no more
  energy (StopTxOnInvalidId false suspends it).
* ClockCtrlr.NextTimeOffsetTransitionDateTime exists (RW, no value until set) because TC_B_11 uses it to
  test dateTime parsing; the station keeps every time in UTC, so the value is only stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import astuple, dataclass

from appliance.devicemodel import values
from appliance.devicemodel.paths import parse_path
from appliance.devicemodel.types import (
    AttributeDef,
    AttributeType,
    Characteristics,
    ComponentKey,
    DataType,
    Mutability,
    VariableDef,
    VariableKey,
)
from appliance.hardware.base import EvseLayout

S, D, INT, DT, B = DataType.string, DataType.decimal, DataType.integer, DataType.dateTime, DataType.boolean
OL, SL, ML = DataType.OptionList, DataType.SequenceList, DataType.MemberList
RO, RW, WO = Mutability.ReadOnly, Mutability.ReadWrite, Mutability.WriteOnly

#: The certified station: EVSE 1 three-phase, EVSE 2 single-phase, each one fixed-cable Type 2 connector.
DEFAULT_LAYOUTS: tuple[EvseLayout, ...] = (EvseLayout(1, phases=3), EvseLayout(2, phases=1))

#: The measurands this station's meters deliver (digest §3, "Measurands required for this station").
MEASURANDS = (
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Import.Register",
    "Voltage",
    "Power.Offered",
    "Power.Active.Import",
)
#: AvailabilityState of the station, an EVSE or a connector: the ConnectorStatusEnumType values.
AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
#: TxStartPoint/TxStopPoint members the station can detect: no parking-bay sensor, no signed meter data.
TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
TIME_SOURCES = ("Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork", "RadioTimeTransmitter")
#: Station-initiated messages other than TransactionEvent (which is always queued).
QUEUEABLE = (
    "Authorize",
    "BootNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyEvent",
    "NotifyReport",
    "SecurityEventNotification",
    "StatusNotification",
)
ENERGY = "Energy.Active.Import.Register"
#: Bytes the auth cache / local list may use (their Storage maxLimit).
STORAGE_BYTES = 1_048_576


@dataclass(frozen=True)
class Spec:
    """One row of the table; `variable` may carry its instance: ``"MessageAttempts[TransactionEvent]"``."""

    component: str
    variable: str
    data_type: DataType
    mutability: Mutability
    default: object
    unit: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    values: tuple[str, ...] = ()
    persistent: bool = True
    constant: bool = False
    pattern: str | None = None
    non_empty: bool = False
    reboot: bool = False
    #: further attributes besides Actual: (type, mutability, default, persistent, constant)
    more: tuple[tuple[AttributeType, Mutability, object, bool, bool], ...] = ()


def phase_rotations(phases: int) -> tuple[str, ...]:
    """The PhaseRotation values of a component with `phases` supply phases (Part 2 appendix, PhaseRotation).

    One letter per own phase L1, L2, L3 names the phase of the upstream feed it is wired to (R = L1, S = L2,
    T = L3), x a phase not connected: a three-phase component has the six orders of R, S and T (RST is the
    standard wiring); a single-phase one has its L1 on one of them (Rxx, Sxx, Txx). The empty string, "not
    known or not applicable", is the default until the station maker or the CSMS sets one; it comes first, so
    the reported valuesList starts with a comma (",RST,RTS,…"), which every split-on-comma reads as an empty
    first member (a trailing one is dropped by some, e.g. Java's String.split).
    """
    codes = (
        ["".join(order) for order in itertools.permutations("RST")]
        if phases == 3
        else ([letter + "xx" for letter in "RST"])
    )
    return ("", *codes)


V = Spec  # keeps the table rows short

#: The certificate store's capacity (SecurityCtrlr.CertificateEntries maxLimit; `[limits]` may narrow it).
CERTIFICATE_ENTRIES = 24

# --- smart charging block (appliance/blocks/smart_charging.py) ------------------------------------------------
#: Profiles the station keeps (Entries[ChargingProfiles] maxLimit), periods per schedule, highest stackLevel.
CHARGING_PROFILES_MAX = 24
PERIODS_PER_SCHEDULE = 24
PROFILE_STACK_LEVEL = 8
SMART_CHARGING: tuple[Spec, ...] = (
    V("SmartChargingCtrlr", "Available", B, RO, True, constant=True),
    V("SmartChargingCtrlr", "Enabled", B, RW, True),
    V(
        "SmartChargingCtrlr",
        "Entries[ChargingProfiles]",
        INT,
        RO,
        0,
        min=0,
        max=CHARGING_PROFILES_MAX,
        persistent=False,
    ),
    V("SmartChargingCtrlr", "ExternalControlSignalsEnabled", B, RW, True),
    V("SmartChargingCtrlr", "LimitChangeSignificance", D, RW, 10.0, unit="Percent", min=0),
    V("SmartChargingCtrlr", "PeriodsPerSchedule", INT, RO, PERIODS_PER_SCHEDULE, min=1, max=PERIODS_PER_SCHEDULE),
    V("SmartChargingCtrlr", "ProfileStackLevel", INT, RO, PROFILE_STACK_LEVEL, min=0, max=PROFILE_STACK_LEVEL),
    V("SmartChargingCtrlr", "RateUnit", ML, RO, "A,W", values=("A", "W"), non_empty=True),
)

STATION: tuple[Spec, ...] = (
    V("ChargingStation", "AllowNewSessionsPendingFirmwareUpdate", B, RW, False),
    V("ChargingStation", "AvailabilityState", OL, RO, "Available", values=AVAILABILITY, persistent=False),
    V("ChargingStation", "Available", B, RO, True, constant=True),
    V("ChargingStation", "Model", S, RO, "", max=20),
    V("ChargingStation", "Problem", B, RO, False, persistent=False),
    V("ChargingStation", "VendorName", S, RO, "", max=50),
    # ChargingStation.SupplyPhases depends on the layout: see station_specs().
    V("OCPPCommCtrlr", "ActiveNetworkProfile", INT, RO, 1, min=0, persistent=False),
    V(
        "OCPPCommCtrlr",
        "FileTransferProtocols",
        ML,
        RO,
        "HTTP,HTTPS,FTP",
        values=("HTTP", "HTTPS", "FTP"),
        constant=True,
    ),  # firmware downloads (and log uploads) speak all three
    V("OCPPCommCtrlr", "HeartbeatInterval", INT, RW, 60, unit="s", min=0),
    V("OCPPCommCtrlr", "MessageAttemptInterval[TransactionEvent]", INT, RW, 60, unit="s", min=0),
    V("OCPPCommCtrlr", "MessageAttempts[TransactionEvent]", INT, RW, 3, min=1),
    V("OCPPCommCtrlr", "MessageTimeout[Default]", INT, RO, 30, unit="s", min=1),
    V("OCPPCommCtrlr", "MessageTypesDiscardForQueueing", ML, RO, "", values=QUEUEABLE),
    V("OCPPCommCtrlr", "NetworkConfigurationPriority", S, RW, "1", pattern=r"[0-9]+(,[0-9]+)*", max=100),
    V("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", INT, RW, 3, min=1),
    V("OCPPCommCtrlr", "OfflineThreshold", INT, RW, 60, unit="s", min=0),
    V("OCPPCommCtrlr", "QueueAllMessages", B, RO, False),
    V("OCPPCommCtrlr", "ResetRetries", INT, RW, 2, min=0),
    V("OCPPCommCtrlr", "RetryBackOffRandomRange", INT, RW, 2, unit="s", min=0),
    V("OCPPCommCtrlr", "RetryBackOffRepeatTimes", INT, RW, 3, min=0),
    V("OCPPCommCtrlr", "RetryBackOffWaitMinimum", INT, RW, 3, unit="s", min=0),
    V("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", B, RO, False, constant=True),
    V("OCPPCommCtrlr", "WebSocketPingInterval", INT, RW, 30, unit="s", min=0),
    V("SecurityCtrlr", "BasicAuthPassword", S, WO, None, min=16, max=40),
    V("SecurityCtrlr", "CertificateEntries", INT, RO, 0, min=0, max=CERTIFICATE_ENTRIES),
    V("SecurityCtrlr", "Identity", S, RO, "", max=48),
    V("SecurityCtrlr", "OrganizationName", S, RW, "", max=64),
    V("SecurityCtrlr", "SecurityProfile", INT, RO, 1, min=0, max=3),
    # certificates block (issue 10): CSR retries (A02.FR.17/18) and the CertificateSigned size limit
    V("SecurityCtrlr", "CertSigningRepeatTimes", INT, RW, 3, min=0, max=10),
    V("SecurityCtrlr", "CertSigningWaitMinimum", INT, RW, 60, unit="s", min=1),
    V("SecurityCtrlr", "MaxCertificateChainSize", INT, RO, 10000, min=1, max=10000),
    V("DeviceDataCtrlr", "BytesPerMessage[GetReport]", INT, RO, 1000, min=1),
    V("DeviceDataCtrlr", "BytesPerMessage[GetVariables]", INT, RO, 1000, min=1),
    V("DeviceDataCtrlr", "BytesPerMessage[SetVariables]", INT, RO, 1000, min=1),
    V("DeviceDataCtrlr", "ConfigurationValueSize", INT, RO, 1000, min=1, max=1000),
    V("DeviceDataCtrlr", "ItemsPerMessage[GetReport]", INT, RO, 1, min=1),
    V("DeviceDataCtrlr", "ItemsPerMessage[GetVariables]", INT, RO, 10, min=1),
    V("DeviceDataCtrlr", "ItemsPerMessage[SetVariables]", INT, RO, 1, min=1),
    V("DeviceDataCtrlr", "ReportingValueSize", INT, RO, 2500, min=1, max=2500),
    V("DeviceDataCtrlr", "ValueSize", INT, RO, 2500, min=1, max=2500),
    V("ClockCtrlr", "DateTime", DT, RO, None, persistent=False),
    V("ClockCtrlr", "NextTimeOffsetTransitionDateTime", DT, RW, None),
    V("ClockCtrlr", "TimeAdjustmentReportingThreshold", INT, RW, 20, unit="s", min=0),
    V("ClockCtrlr", "TimeSource", SL, RW, "Heartbeat", values=TIME_SOURCES, non_empty=True),
    V("TxCtrlr", "EVConnectionTimeOut", INT, RW, 120, unit="s", min=0),
    V("TxCtrlr", "StopTxOnEVSideDisconnect", B, RO, True, constant=True),
    V("TxCtrlr", "StopTxOnInvalidId", B, RW, True),
    V("TxCtrlr", "TxBeforeAcceptedEnabled", B, RO, False, constant=True),
    V("TxCtrlr", "TxStartPoint", ML, RW, "EVConnected,Authorized", values=TX_POINTS, non_empty=True),
    V("TxCtrlr", "TxStopPoint", ML, RW, "EVConnected,Authorized", values=TX_POINTS, non_empty=True),
    V("SampledDataCtrlr", "Enabled", B, RW, True),
    V("SampledDataCtrlr", "TxEndedInterval", INT, RW, 0, unit="s", min=0),
    V("SampledDataCtrlr", "TxEndedMeasurands", ML, RW, MEASURANDS, values=MEASURANDS),
    V("SampledDataCtrlr", "TxStartedMeasurands", ML, RW, MEASURANDS, values=MEASURANDS),
    V("SampledDataCtrlr", "TxUpdatedInterval", INT, RW, 60, unit="s", min=0),
    V("SampledDataCtrlr", "TxUpdatedMeasurands", ML, RW, MEASURANDS, values=MEASURANDS),
    V("AlignedDataCtrlr", "Enabled", B, RW, True),
    V("AlignedDataCtrlr", "Interval", INT, RW, 900, unit="s", min=0),
    V("AlignedDataCtrlr", "Measurands", ML, RW, ENERGY, values=MEASURANDS),
    V("AlignedDataCtrlr", "SendDuringIdle", B, RW, False),
    V("AlignedDataCtrlr", "TxEndedInterval", INT, RW, 0, unit="s", min=0),
    V("AlignedDataCtrlr", "TxEndedMeasurands", ML, RW, ENERGY, values=MEASURANDS),
    V("AuthCtrlr", "AuthorizeRemoteStart", B, RW, True),
    V("AuthCtrlr", "DisableRemoteAuthorization", B, RW, False),
    V("AuthCtrlr", "Enabled", B, RW, True),
    V("AuthCtrlr", "LocalAuthorizeOffline", B, RW, True),
    V("AuthCtrlr", "LocalPreAuthorize", B, RW, True),
    V("AuthCtrlr", "MasterPassGroupId", S, RW, "", max=36),
    V("AuthCacheCtrlr", "Available", B, RO, True, constant=True),
    V("AuthCacheCtrlr", "DisablePostAuthorize", B, RW, False),
    V("AuthCacheCtrlr", "Enabled", B, RW, True),
    V("AuthCacheCtrlr", "LifeTime", INT, RW, 86400, unit="s", min=0),
    V("AuthCacheCtrlr", "Policy", OL, RO, "LRU", values=("LRU",), constant=True),
    V("AuthCacheCtrlr", "Storage", INT, RO, 0, unit="B", min=0, max=STORAGE_BYTES),
    V("LocalAuthListCtrlr", "Available", B, RO, True, constant=True),
    V("LocalAuthListCtrlr", "BytesPerMessage", INT, RO, 1000, min=1),
    V("LocalAuthListCtrlr", "DisablePostAuthorize", B, RW, False),
    V("LocalAuthListCtrlr", "Enabled", B, RW, True),
    V("LocalAuthListCtrlr", "Entries", INT, RO, 0, min=0, max=10),
    V("LocalAuthListCtrlr", "ItemsPerMessage", INT, RO, 10, min=1),
    V("LocalAuthListCtrlr", "Storage", INT, RO, 0, unit="B", min=0, max=STORAGE_BYTES),
    *SMART_CHARGING,
)


def station_specs(layouts: Sequence[EvseLayout]) -> tuple[Spec, ...]:
    """The rows that depend on the hardware: the station's phases (and so its PhaseRotation values)."""
    phases = max((layout.phases for layout in layouts), default=0)
    return (
        V("ChargingStation", "PhaseRotation", OL, RW, "", values=phase_rotations(phases)),
        V("ChargingStation", "SupplyPhases", INT, RO, phases, min=0, max=3, constant=True),
    )


def evse_specs(layout: EvseLayout) -> tuple[Spec, ...]:
    """The rows of one EVSE component; Power's maxLimit is what the EVSE can deliver (Part 2: required)."""
    max_w = layout.max_power_w
    return (
        V("EVSE", "AllowReset", B, RO, True, constant=True),
        V("EVSE", "AvailabilityState", OL, RO, "Available", values=AVAILABILITY, persistent=False),
        V("EVSE", "Available", B, RO, True, constant=True),
        V("EVSE", "PhaseRotation", OL, RW, "", values=phase_rotations(layout.phases)),
        V(
            "EVSE",
            "Power",
            D,
            RO,
            0,
            unit="W",
            min=0,
            max=max_w,
            persistent=False,
            more=((AttributeType.MaxSet, RO, max_w, True, True),),
        ),
        V("EVSE", "SupplyPhases", INT, RO, layout.phases, min=0, max=3, constant=True),
    )


def connector_specs(layout: EvseLayout) -> tuple[Spec, ...]:
    """The rows of the EVSE's one connector (connectorId 1)."""
    return (
        V("Connector", "AvailabilityState", OL, RO, "Available", values=AVAILABILITY, persistent=False),
        V("Connector", "Available", B, RO, True, constant=True),
        V("Connector", "ConnectorType", S, RO, layout.connector_type, constant=True),
        V("Connector", "SupplyPhases", INT, RO, layout.phases, min=0, max=3, constant=True),
    )


def build_catalog(layouts: Sequence[EvseLayout]) -> list[VariableDef]:
    """Every variable of a station with these EVSEs, in report order (station first, then per EVSE).

    The definitions are immutable, so stations with the same layout share them (a fresh list each call): many
    virtual stations in one process (`appliance fleet`) then hold one catalog, not one each.
    """
    shape = tuple(astuple(layout) for layout in layouts)
    table, shared = _CATALOGS.get(shape, (None, ()))
    if table is not STATION:  # built from another table (a test swaps STATION): build afresh
        shared = tuple(_build_catalog(layouts))
        _CATALOGS[shape] = (STATION, shared)
    return list(shared)


#: Catalogs built so far, by layout, with the table each was built from (a process sees one or a few layouts).
_CATALOGS: dict[tuple[tuple[object, ...], ...], tuple[tuple[Spec, ...], tuple[VariableDef, ...]]] = {}


def _build_catalog(layouts: Sequence[EvseLayout]) -> list[VariableDef]:
    ids = [layout.evse_id for layout in layouts]
    if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):
        raise ValueError(f"EVSE ids must be distinct and > 0, got {ids}")
    catalog = [_define(spec, ComponentKey(spec.component)) for spec in (*STATION, *station_specs(layouts))]
    for layout in sorted(layouts, key=lambda item: item.evse_id):
        evse = ComponentKey("EVSE", evse=layout.evse_id)
        connector = ComponentKey("Connector", evse=layout.evse_id, connector=1)
        catalog += [_define(spec, evse) for spec in evse_specs(layout)]
        catalog += [_define(spec, connector) for spec in connector_specs(layout)]
    keys = [definition.key for definition in catalog]
    if len(set(keys)) != len(keys):
        raise ValueError("the catalog defines a variable twice")
    return catalog


def _define(spec: Spec, component: ComponentKey) -> VariableDef:
    parsed = parse_path(f"X.{spec.variable}")
    chars = Characteristics(
        data_type=spec.data_type,
        unit=spec.unit,
        min_limit=spec.min,
        max_limit=_tidy(spec.max),
        values_list=spec.values,
        pattern=spec.pattern,
        non_empty=spec.non_empty,
    )
    attributes = [
        AttributeDef(
            AttributeType.Actual, spec.mutability, _default(chars, spec.default), spec.persistent, spec.constant
        )
    ]
    for attribute_type, mutability, default, persistent, constant in spec.more:
        attributes.append(AttributeDef(attribute_type, mutability, _default(chars, default), persistent, constant))
    key = VariableKey(component, parsed.variable, parsed.variable_instance)
    return VariableDef(key, chars, tuple(attributes), reboot_required=spec.reboot)


def _default(chars: Characteristics, default: object) -> str | None:
    return None if default is None else values.canonical(chars, default)


def _tidy(limit: int | float | None) -> int | float | None:
    """22080.0 W reads better as 22080 in a report; both are the same JSON number."""
    if isinstance(limit, float) and limit.is_integer():
        return int(limit)
    return limit
