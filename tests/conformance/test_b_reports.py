"""Part 6 B reports: GetBaseReport (TC_B_12 ConfigurationInventory, TC_B_13 FullInventory, TC_B_14
SummaryInventory, TC_B_53 mandatory variables via FullInventory) and GetReport (TC_B_16…TC_B_19, Advanced Device
Management in Part 5 but implemented here), plus NotifyReport paging under the certified limits
(ItemsPerMessage[GetReport] 1, BytesPerMessage[GetReport] 1000) and under larger ones a station maker sets in the
config's `[variables]`, the componentCriteria filters, and unsupported or malformed requests.

Not applicable: TC_B_15 (NotSupported SummaryInventory — this station supports it, C-56). TC_B_54…B_56 are
Advanced Device Management cases outside this batch.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from appliance.lab.csms import Delayed, LoopbackCsms
from appliance.lab.process import PASSWORD
from tests.conformance.remote_helpers import (
    assert_still_running,
    call,
    call_error,
    is_utc_timestamp,
    no_error,
    station_up,
)

LIST_TYPES = ("OptionList", "SequenceList", "MemberList")
#: "Referenced Components and Variables" marked required in the appendix (dm_components_vars.csv), for the
#: functional blocks this station implements (no display messages, ISO 15118, monitoring, smart charging or
#: tariffs), plus ActiveNetworkProfile (errata) and the back-off/ping variables Part 4 requires.
REQUIRED_CONTROLLER_VARIABLES: tuple[tuple[str, str, str | None], ...] = (
    ("AlignedDataCtrlr", "Interval", None),
    ("AlignedDataCtrlr", "Measurands", None),
    ("AlignedDataCtrlr", "TxEndedInterval", None),
    ("AlignedDataCtrlr", "TxEndedMeasurands", None),
    ("AuthCtrlr", "AuthorizeRemoteStart", None),
    ("AuthCtrlr", "LocalAuthorizeOffline", None),
    ("AuthCtrlr", "LocalPreAuthorize", None),
    ("ClockCtrlr", "DateTime", None),
    ("ClockCtrlr", "TimeSource", None),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetReport"),
    ("DeviceDataCtrlr", "BytesPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", "BytesPerMessage", "SetVariables"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetReport"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"),
    ("LocalAuthListCtrlr", "BytesPerMessage", None),
    ("LocalAuthListCtrlr", "Entries", None),
    ("LocalAuthListCtrlr", "ItemsPerMessage", None),
    ("OCPPCommCtrlr", "ActiveNetworkProfile", None),
    ("OCPPCommCtrlr", "FileTransferProtocols", None),
    ("OCPPCommCtrlr", "MessageTimeout", "Default"),
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", None),
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None),
    ("OCPPCommCtrlr", "OfflineThreshold", None),
    ("OCPPCommCtrlr", "ResetRetries", None),
    ("OCPPCommCtrlr", "RetryBackOffRandomRange", None),
    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes", None),
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum", None),
    ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None),
    ("OCPPCommCtrlr", "WebSocketPingInterval", None),
    ("SampledDataCtrlr", "TxEndedInterval", None),
    ("SampledDataCtrlr", "TxEndedMeasurands", None),
    ("SampledDataCtrlr", "TxStartedMeasurands", None),
    ("SampledDataCtrlr", "TxUpdatedInterval", None),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
    ("SecurityCtrlr", "CertificateEntries", None),
    ("SecurityCtrlr", "OrganizationName", None),
    ("SecurityCtrlr", "SecurityProfile", None),
    ("TxCtrlr", "EVConnectionTimeOut", None),
    ("TxCtrlr", "StopTxOnEVSideDisconnect", None),
    ("TxCtrlr", "StopTxOnInvalidId", None),
    ("TxCtrlr", "TxStartPoint", None),
    ("TxCtrlr", "TxStopPoint", None),
)
#: The required ones Part 2 defines as ReadWrite (TC_B_12: "the required writable variables").
REQUIRED_WRITABLE = {
    ("AlignedDataCtrlr", "Interval", None),
    ("AlignedDataCtrlr", "Measurands", None),
    ("AlignedDataCtrlr", "TxEndedInterval", None),
    ("AlignedDataCtrlr", "TxEndedMeasurands", None),
    ("AuthCtrlr", "LocalAuthorizeOffline", None),
    ("AuthCtrlr", "LocalPreAuthorize", None),
    ("ClockCtrlr", "TimeSource", None),
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
    ("OCPPCommCtrlr", "NetworkConfigurationPriority", None),
    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None),
    ("OCPPCommCtrlr", "OfflineThreshold", None),
    ("OCPPCommCtrlr", "ResetRetries", None),
    ("OCPPCommCtrlr", "RetryBackOffRandomRange", None),
    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes", None),
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum", None),
    ("OCPPCommCtrlr", "WebSocketPingInterval", None),
    ("SampledDataCtrlr", "TxEndedInterval", None),
    ("SampledDataCtrlr", "TxEndedMeasurands", None),
    ("SampledDataCtrlr", "TxStartedMeasurands", None),
    ("SampledDataCtrlr", "TxUpdatedInterval", None),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
    ("SecurityCtrlr", "OrganizationName", None),
    ("TxCtrlr", "EVConnectionTimeOut", None),
    ("TxCtrlr", "StopTxOnInvalidId", None),
    ("TxCtrlr", "TxStartPoint", None),
    ("TxCtrlr", "TxStopPoint", None),
}
#: "Charging Infrastructure Related" required variables, per component of the default two-EVSE layout.
REQUIRED_INFRASTRUCTURE: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("ChargingStation", None, None, "AvailabilityState"),
    ("ChargingStation", None, None, "Available"),
    ("ChargingStation", None, None, "SupplyPhases"),
    *(
        (name, evse, None, var)
        for evse in (1, 2)
        for name, var in (
            ("EVSE", "AvailabilityState"),
            ("EVSE", "Available"),
            ("EVSE", "Power"),
            ("EVSE", "SupplyPhases"),
        )
    ),
    *(
        (name, evse, 1, var)
        for evse in (1, 2)
        for name, var in (("Connector", "Available"), ("Connector", "ConnectorType"), ("Connector", "SupplyPhases"))
    ),
)
CERTIFIED = (1, 1000)
LARGER = (20, 8000)
#: A limit where the bytes, not the item count, end the pages.
BYTES_BOUND = (50, 2000)


def limits(items: int, size: int) -> dict[str, int]:
    return {"DeviceDataCtrlr.ItemsPerMessage[GetReport]": items, "DeviceDataCtrlr.BytesPerMessage[GetReport]": size}


def compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# --- collecting and checking NotifyReport ------------------------------------------------------------------


_request_ids = itertools.count(1001)


async def report(
    csms: LoopbackCsms, action: str, payload: dict[str, Any], timeout: float = 20
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send GetBaseReport/GetReport with a fresh requestId; the response and, when Accepted, every NotifyReport
    of that request (waits for the one without tbc)."""
    request_id = next(_request_ids)
    mark = csms.mark()
    answer = await call(csms, action, {"requestId": request_id, **payload})
    if answer["status"] != "Accepted":
        return answer, []

    def complete() -> list[dict[str, Any]] | None:
        pages = [p for p in csms.actions("CS001", "NotifyReport", mark) if p["requestId"] == request_id]
        return pages if any(not p.get("tbc", False) for p in pages) else None

    return answer, await csms.trio.wait_for(complete, timeout, what=f"the last NotifyReport of {request_id}")


def check_pages(pages: list[dict[str, Any]], items: int | None = None, size: int | None = None) -> None:
    """Step 3 of every report case: requestId, generatedAt, seqNo 0, 1, 2 …, tbc true on all but the last; each
    page within ItemsPerMessage[GetReport] items and (unless it is a single oversized item) BytesPerMessage."""
    assert pages, "no NotifyReport"
    request_ids = {p["requestId"] for p in pages}
    assert len(request_ids) == 1, request_ids
    assert [p["seqNo"] for p in pages] == list(range(len(pages))), [p["seqNo"] for p in pages]
    assert all(p.get("tbc") is True for p in pages[:-1]), [p.get("tbc") for p in pages]
    assert pages[-1].get("tbc", False) is False, pages[-1]
    for page in pages:
        assert is_utc_timestamp(page["generatedAt"]), page["generatedAt"]
        assert page.get("reportData"), page
        if items is not None:
            assert len(page["reportData"]) <= items, (len(page["reportData"]), items)
        if size is not None and len(page["reportData"]) > 1:
            assert compact(page) <= size, f"NotifyReport {page['seqNo']} is {compact(page)} bytes, limit {size}"


def data(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["reportData"]]


def key(item: dict[str, Any]) -> tuple[str, int | None, int | None, str, str | None]:
    c, v = item["component"], item["variable"]
    evse = c.get("evse", {})
    return c["name"], evse.get("id"), evse.get("connectorId"), v["name"], v.get("instance")


def attribute(item: dict[str, Any], kind: str = "Actual") -> dict[str, Any] | None:
    return next((a for a in item["variableAttribute"] if a.get("type", "Actual") == kind), None)


def value_allowed(data_type: str, value: str, allowed: list[str]) -> bool:
    """An OptionList value is one of the list; a SequenceList/MemberList value is a comma-separated selection
    from it (an empty MemberList is the empty selection)."""
    if data_type == "OptionList":
        return value in allowed
    members = [m.strip() for m in value.split(",") if m.strip()]
    if data_type == "SequenceList" and not members:
        return False
    return all(m in allowed for m in members)


def check_items(items: list[dict[str, Any]]) -> None:
    """Per reported variable: variableCharacteristics present; list types carry a non-empty valuesList and a value
    within it; WriteOnly attributes carry no value (TC_B_12/13/14/53 post-scenario validations)."""
    for item in items:
        chars = item.get("variableCharacteristics")
        assert chars is not None, item
        assert isinstance(chars.get("supportsMonitoring"), bool), item
        for attr in item["variableAttribute"]:
            if attr.get("mutability") == "WriteOnly":
                assert "value" not in attr, f"WriteOnly value reported: {item}"
        if chars["dataType"] in LIST_TYPES:
            # An empty member is a value too: PhaseRotation's "" (not known) leads its valuesList (",RST,…").
            allowed = [v.strip() for v in chars.get("valuesList", "").split(",")]
            assert any(allowed), f"{key(item)}: {chars['dataType']} without valuesList"
            for attr in item["variableAttribute"]:
                if "value" in attr:
                    assert value_allowed(chars["dataType"], attr["value"], allowed), (key(item), attr, allowed)


def keys_of(items: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    return {(k[0], k[3], k[4]) for k in map(key, items)}


def assert_required_present(items: list[dict[str, Any]]) -> None:
    present = keys_of(items)
    missing = [v for v in REQUIRED_CONTROLLER_VARIABLES if v not in present]
    assert not missing, f"required variables missing: {missing}"
    full = {(k[0], k[1], k[2], k[3]) for k in map(key, items)}
    missing_infra = [v for v in REQUIRED_INFRASTRUCTURE if v not in full]
    assert not missing_infra, f"required infrastructure variables missing: {missing_infra}"


# --- TC_B_12 / B_13 / B_14 / B_53 ---------------------------------------------------------------------------


async def test_TC_B_12_configuration_inventory(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_12_CS (B07.FR.01/03/04/07/10/12): GetBaseReport ConfigurationInventory.

    Step 2: Accepted, statusInfo absent or NoError. Step 3: NotifyReport with the requestId, generatedAt, seqNo
    0 and +1 while tbc; list types carry a valuesList. Post: every variable has variableCharacteristics and is
    ReadWrite or WriteOnly; the required writable variables of the implemented blocks are all reported.
    """
    async with station_up(csms, data_dir):
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "ConfigurationInventory"})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_pages(pages, *CERTIFIED)
        items = data(pages)
        check_items(items)
        for item in items:
            mutabilities = {a.get("mutability", "ReadWrite") for a in item["variableAttribute"]}
            assert mutabilities <= {"ReadWrite", "WriteOnly"}, (key(item), mutabilities)
        missing = REQUIRED_WRITABLE - keys_of(items)
        assert not missing, f"required writable variables missing: {sorted(missing, key=str)}"


async def test_TC_B_13_full_inventory(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_13_CS (B07.FR.01/03/04/08/10/12): GetBaseReport FullInventory.

    Step 2 Accepted (statusInfo absent/NoError); step 3 pages as in B_12; post: every variable has
    variableCharacteristics; the required "Charging Infrastructure" variables (ChargingStation, each EVSE and
    Connector) and the required controller variables are reported; read-only ones too (unlike B_12).
    """
    async with station_up(csms, data_dir):
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "FullInventory"})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_pages(pages, *CERTIFIED)
        items = data(pages)
        check_items(items)
        assert_required_present(items)
        assert len(set(map(key, items))) == len(items), "a variable reported twice"
        assert any(attribute(i) and attribute(i)["mutability"] == "ReadOnly" for i in items)  # type: ignore[index]


async def test_TC_B_14_summary_inventory(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_14_CS (B07.FR.09, C-56): GetBaseReport SummaryInventory.

    Step 2 Accepted; step 3 pages; post: variableCharacteristics present, list types with valuesList; the report
    holds AvailabilityState of the ChargingStation and of each EVSE (Connector optional), each an OptionList
    whose value is the current state.
    """
    async with station_up(csms, data_dir) as station:
        await station.hardware.plug(2)  # a non-trivial state: EVSE 2 Occupied
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "SummaryInventory"})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_pages(pages, *CERTIFIED)
        items = data(pages)
        check_items(items)
        states = {
            (k[0], k[1], k[2]): attribute(i)["value"]  # type: ignore[index]
            for i in items
            if (k := key(i))[3] == "AvailabilityState"
        }
        assert states.get(("ChargingStation", None, None)) in ("Available", "Occupied"), states
        assert states.get(("EVSE", 1, None)) == "Available", states
        assert states.get(("EVSE", 2, None)) == "Occupied", states
        for (name, _evse, _connector), _state in states.items():
            assert name in ("ChargingStation", "EVSE", "Connector")
        assert len(items) < 40, "a summary, not the full inventory"


async def test_TC_B_53_mandatory_variables_full_inventory(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_53_CS: FullInventory; all required components/variables implemented; every OptionList/SequenceList/
    MemberList has a non-empty valuesList and a value allowed by it; WriteOnly values omitted.

    SecurityCtrlr.BasicAuthPassword (WriteOnly) is given a value through the config (the factory password) so
    that omitting it is actually tested.
    """
    async with station_up(csms, data_dir, variables={"SecurityCtrlr.BasicAuthPassword": PASSWORD}):
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "FullInventory"})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_pages(pages)
        items = data(pages)
        check_items(items)
        assert_required_present(items)
        password = [i for i in items if key(i)[0] == "SecurityCtrlr" and key(i)[3] == "BasicAuthPassword"]
        assert password, "BasicAuthPassword not reported"
        for attr in password[0]["variableAttribute"]:
            assert attr["mutability"] == "WriteOnly" and "value" not in attr, attr
        assert PASSWORD not in json.dumps(pages)
        lists = [i for i in items if i["variableCharacteristics"]["dataType"] in LIST_TYPES]
        assert {key(i)[3] for i in lists} >= {"TxStartPoint", "TxStopPoint", "TimeSource", "AvailabilityState"}


# --- TC_B_16 … TC_B_19 (custom reports) ------------------------------------------------------------------------


async def test_TC_B_16_custom_report_component_criteria(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_16_CS (B08): GetReport componentCriteria {Enabled}: Accepted; NotifyReport pages (seqNo, tbc); every
    component whose Enabled is "true" in the FullInventory is reported with Enabled "true" (post-scenario check);
    no component whose Enabled is "false" is reported; step 5/6: GetVariables of the reported Enabled
    variables answer Accepted "true".

    The OCTT's step-3 line "reportData.variable.name is Enabled" is read as "the Enabled variables reported are
    true": reporting the other variables of an enabled component (B08: the report is about components) is
    accepted, as is treating a component without an Enabled variable as enabled.
    """
    async with station_up(csms, data_dir, variables={"AlignedDataCtrlr.Enabled": False}):
        _, full_pages = await report(csms, "GetBaseReport", {"reportBase": "FullInventory"})
        enabled = {
            (k[0], k[1], k[2]): attribute(i)["value"]  # type: ignore[index]
            for i in data(full_pages)
            if (k := key(i))[3] == "Enabled"
        }
        assert enabled[("AlignedDataCtrlr", None, None)] == "false"
        answer, pages = await report(csms, "GetReport", {"componentCriteria": ["Enabled"]})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_pages(pages, *CERTIFIED)
        items = data(pages)
        check_items(items)
        reported = {(k[0], k[1], k[2]) for k in map(key, items)}
        for component, value in enabled.items():
            if value == "true":
                assert component in reported, f"{component} (Enabled true) missing"
            else:
                assert component not in reported, f"{component} (Enabled false) reported"
        enabled_items = [i for i in items if key(i)[3] == "Enabled"]
        assert enabled_items and all(attribute(i)["value"] == "true" for i in enabled_items)  # type: ignore[index]
        result = await call(
            csms,
            "GetVariables",
            {"getVariableData": [{"component": i["component"], "variable": i["variable"]} for i in enabled_items[:10]]},
        )
        for r in result["getVariableResult"]:
            assert (r["attributeStatus"], r.get("attributeValue")) == ("Accepted", "true"), r


EVSE1_AVAILABILITY = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}


def check_evse1_availability(pages: list[dict[str, Any]]) -> None:
    """Step 3 of TC_B_17/B_18: one variable, EVSE 1 AvailabilityState, an OptionList of the five states,
    ReadOnly, attribute Actual."""
    check_pages(pages)
    [item] = data(pages)
    assert item["component"]["name"] == "EVSE" and item["component"]["evse"]["id"] == 1, item
    assert item["variable"]["name"] == "AvailabilityState", item
    chars = item["variableCharacteristics"]
    assert chars["dataType"] == "OptionList", chars
    assert [v.strip() for v in chars["valuesList"].split(",")] == [
        "Available",
        "Occupied",
        "Reserved",
        "Unavailable",
        "Faulted",
    ], chars
    [attr] = item["variableAttribute"]
    assert attr.get("type", "Actual") == "Actual" and attr["mutability"] == "ReadOnly", attr
    assert attr["value"] == "Available", attr


async def test_TC_B_17_custom_report_component_variable(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_17_CS (B08.FR.11): GetReport componentVariable EVSE(evse.id 1).AvailabilityState: Accepted
    (statusInfo absent/NoError); NotifyReport seqNo 0 with exactly that variable: OptionList with valuesList
    "Available, Occupied, Reserved, Unavailable, Faulted", mutability ReadOnly, type Actual."""
    async with station_up(csms, data_dir):
        answer, pages = await report(csms, "GetReport", {"componentVariable": [EVSE1_AVAILABILITY]})
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_evse1_availability(pages)


async def test_TC_B_18_custom_report_criteria_and_component_variable(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_18_CS (B08.FR.05/11/15): criteria {Available} + EVSE 1 AvailabilityState → Accepted and the one
    variable (as in B_17); criteria {Problem} + the same variable → EmptyResultSet (statusInfo absent or
    NotFound) and no NotifyReport."""
    async with station_up(csms, data_dir):
        answer, pages = await report(
            csms, "GetReport", {"componentCriteria": ["Available"], "componentVariable": [EVSE1_AVAILABILITY]}
        )
        assert answer["status"] == "Accepted" and no_error(answer), answer
        check_evse1_availability(pages)
        mark = csms.mark()
        answer, _ = await report(
            csms, "GetReport", {"componentCriteria": ["Problem"], "componentVariable": [EVSE1_AVAILABILITY]}
        )
        assert answer["status"] == "EmptyResultSet" and no_error(answer, "NotFound"), answer
        await assert_still_running(csms)
        assert csms.actions("CS001", "NotifyReport", mark) == []


async def test_TC_B_19_custom_report_unknown_criteria(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_B_19_CS (B08.FR.02): componentCriteria {Available, <unsupported>} without componentVariable →
    NotSupported (statusInfo absent, UnsupportedParam or InvalidValue). The station supports all four enum
    values, so the unsupported one is a value outside the enum; as the case's note says, the JSON validation
    may catch it first: a CALLERROR (PropertyConstraintViolation / FormatViolation) is accepted too. No
    NotifyReport follows and the station keeps running."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        payload = {"requestId": 77, "componentCriteria": ["Available", "Tripped"]}
        try:
            answer = await call(csms, "GetReport", payload, validate=False)
        except Exception as exc:
            assert getattr(exc, "code", None) in ("PropertyConstraintViolation", "FormatViolation"), exc
        else:
            assert answer["status"] == "NotSupported", answer
            assert no_error(answer, "UnsupportedParam", "InvalidValue"), answer
        await assert_still_running(csms)
        assert csms.actions("CS001", "NotifyReport", mark) == []


# --- paging under the certified and larger limits --------------------------------------------------------------

REPORTS: list[tuple[str, str, dict[str, Any]]] = [
    ("configuration", "GetBaseReport", {"reportBase": "ConfigurationInventory"}),
    ("full", "GetBaseReport", {"reportBase": "FullInventory"}),
    ("summary", "GetBaseReport", {"reportBase": "SummaryInventory"}),
    ("component", "GetReport", {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]}),
    ("criteria", "GetReport", {"componentCriteria": ["Available"]}),
]


@pytest.mark.parametrize(
    "limit", [CERTIFIED, LARGER, BYTES_BOUND], ids=["certified-1x1000", "larger-20x8000", "bytes-bound-50x2000"]
)
@pytest.mark.parametrize(("name", "action", "payload"), REPORTS, ids=[r[0] for r in REPORTS])
async def test_report_paging(
    csms: LoopbackCsms, data_dir: Path, name: str, action: str, payload: dict[str, Any], limit: tuple[int, int]
) -> None:
    """B07.FR.04/B08.FR.04 paging: NotifyReport seqNo 0..n, tbc true on all but the last, each page within
    ItemsPerMessage[GetReport]; with the certified limit
    (1 item) every page holds exactly one item; with larger limits the pages are filled (a page ends only
    when the next item would break a limit), and the same variables are reported either way."""
    items_limit, bytes_limit = limit
    async with station_up(csms, data_dir, variables=limits(items_limit, bytes_limit)):
        answer, pages = await report(csms, action, payload)
        assert answer["status"] == "Accepted", answer
        check_pages(pages, items_limit)  # the byte size: test_notify_report_within_bytes_per_message
        items = data(pages)
        check_items(items)
        if items_limit == 1:
            assert all(len(p["reportData"]) == 1 for p in pages)
        for page, following in itertools.pairwise(pages):
            full = len(page["reportData"]) == items_limit
            no_room = compact({**page, "reportData": [*page["reportData"], following["reportData"][0]]}) > bytes_limit
            assert full or no_room, f"page {page['seqNo']} ended early ({len(page['reportData'])} items)"
        if limit != CERTIFIED and len(items) > 1:
            assert len(pages) < len(items), "larger limits must put several items in a page"


async def test_notify_report_within_bytes_per_message(csms: LoopbackCsms, data_dir: Path) -> None:
    """The reports block promises NotifyReport messages of at most BytesPerMessage[GetReport] bytes (an item
    larger than that travels alone): with 50 items / 2000 bytes every multi-item NotifyReport payload, as sent,
    is at most 2000 bytes of compact JSON."""
    async with station_up(csms, data_dir, variables=limits(*BYTES_BOUND)):
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "FullInventory"})
        assert answer["status"] == "Accepted", answer
        check_pages(pages, *BYTES_BOUND)


async def test_get_report_limits(csms: LoopbackCsms, data_dir: Path) -> None:
    """B08.FR.17/18 (per libocpp): more componentVariable entries than ItemsPerMessage[GetReport] (1) →
    CALLERROR OccurrenceConstraintViolation; a request larger than BytesPerMessage[GetReport] (1000) →
    FormatViolation; the station keeps running."""
    two = [{"component": {"name": "OCPPCommCtrlr"}}, {"component": {"name": "TxCtrlr"}}]
    async with station_up(csms, data_dir):
        code = await call_error(csms, "GetReport", {"requestId": 5, "componentVariable": two})
        assert code == "OccurrenceConstraintViolation"
        big = {
            "requestId": 6,
            "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}],
            "customData": {"vendorId": "org.test", "padding": "x" * 1200},
        }
        assert await call_error(csms, "GetReport", big) == "FormatViolation"
        await assert_still_running(csms)


async def test_get_report_two_component_variables_under_larger_limit(csms: LoopbackCsms, data_dir: Path) -> None:
    """With ItemsPerMessage[GetReport] 20 (config `[variables]`) two componentVariable entries are fine: both
    components' variables are reported, nothing else."""
    two = [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}},
    ]
    async with station_up(csms, data_dir, variables=limits(*LARGER)):
        answer, pages = await report(csms, "GetReport", {"componentVariable": two})
        assert answer["status"] == "Accepted", answer
        check_pages(pages, *LARGER)
        assert {key(i)[3] for i in data(pages)} == {"OfflineThreshold", "TxStartPoint"}


# --- criteria filters ---------------------------------------------------------------------------------------


async def test_component_criteria_filters(csms: LoopbackCsms, data_dir: Path) -> None:
    """componentCriteria one by one (ComponentCriterionEnumType): Active — no component has Active = true, so
    EmptyResultSet; Problem — no component has Problem = true, EmptyResultSet; Available — every component whose
    Available is true is reported (ChargingStation, both EVSEs and Connectors, AuthCacheCtrlr,
    LocalAuthListCtrlr) and none whose Available is false; Enabled with SampledDataCtrlr.Enabled set false by
    the CSMS — SampledDataCtrlr drops out."""
    async with station_up(csms, data_dir):
        _, full_pages = await report(csms, "GetBaseReport", {"reportBase": "FullInventory"})
        flags: dict[str, dict[tuple[str, int | None, int | None], str]] = {}
        for item in data(full_pages):
            k = key(item)
            if k[3] in ("Active", "Available", "Enabled", "Problem"):
                flags.setdefault(k[3], {})[(k[0], k[1], k[2])] = attribute(item)["value"]  # type: ignore[index]
        for criterion in ("Active", "Problem"):
            answer, _ = await report(csms, "GetReport", {"componentCriteria": [criterion]})
            if any(v == "true" for v in flags.get(criterion, {}).values()):
                assert answer["status"] == "Accepted", (criterion, answer)
            else:
                assert answer["status"] == "EmptyResultSet", (criterion, answer)
        answer, pages = await report(csms, "GetReport", {"componentCriteria": ["Available"]})
        assert answer["status"] == "Accepted", answer
        reported = {(k[0], k[1], k[2]) for k in map(key, data(pages))}
        for component, value in flags["Available"].items():
            assert (component in reported) == (value == "true"), (component, value)
        assert {("ChargingStation", None, None), ("EVSE", 1, None), ("Connector", 2, 1)} <= reported

        result = await call(
            csms,
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SampledDataCtrlr"},
                        "variable": {"name": "Enabled"},
                        "attributeValue": "false",
                    }
                ]
            },
        )
        assert result["setVariableResult"][0]["attributeStatus"] == "Accepted", result
        answer, pages = await report(csms, "GetReport", {"componentCriteria": ["Enabled"]})
        assert answer["status"] == "Accepted", answer
        reported = {k[0] for k in map(key, data(pages))}
        assert "SampledDataCtrlr" not in reported
        assert {"AlignedDataCtrlr", "AuthCtrlr"} <= reported


async def test_get_report_unknown_component_is_empty(csms: LoopbackCsms, data_dir: Path) -> None:
    """B08 (as TC_B_18 step 6): a componentVariable that matches nothing (an unknown component, a known component
    with an unknown variable, an EVSE the station lacks) → EmptyResultSet (statusInfo absent or NotFound) and no
    NotifyReport."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        for cv in (
            {"component": {"name": "FluxCapacitor"}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Gigawatts"}},
            {"component": {"name": "EVSE", "evse": {"id": 9}}},
        ):
            answer, _ = await report(csms, "GetReport", {"componentVariable": [cv]})
            assert answer["status"] == "EmptyResultSet" and no_error(answer, "NotFound"), (cv, answer)
        assert csms.actions("CS001", "NotifyReport", mark) == []


MALFORMED: list[tuple[str, str, Any, set[str]]] = [
    (
        "base-unknown-report",
        "GetBaseReport",
        {"requestId": 1, "reportBase": "Everything"},
        {"PropertyConstraintViolation"},
    ),
    ("base-missing-request-id", "GetBaseReport", {"reportBase": "FullInventory"}, {"OccurrenceConstraintViolation"}),
    (
        "base-request-id-string",
        "GetBaseReport",
        {"requestId": "one", "reportBase": "FullInventory"},
        {"TypeConstraintViolation"},
    ),
    (
        "base-extra-field",
        "GetBaseReport",
        {"requestId": 1, "reportBase": "FullInventory", "verbose": True},
        {"FormatViolation"},
    ),
    ("report-missing-request-id", "GetReport", {"componentCriteria": ["Available"]}, {"OccurrenceConstraintViolation"}),
    (
        "report-component-without-name",
        "GetReport",
        {"requestId": 2, "componentVariable": [{"component": {}}]},
        {"OccurrenceConstraintViolation"},
    ),
    (
        "report-empty-criteria",
        "GetReport",
        {"requestId": 3, "componentCriteria": []},
        {"OccurrenceConstraintViolation"},
    ),
]


@pytest.mark.parametrize(("action", "payload", "codes"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_report_requests(
    csms: LoopbackCsms, data_dir: Path, action: str, payload: Any, codes: set[str]
) -> None:
    """A GetBaseReport/GetReport that breaks its schema gets the OCPP-J CALLERROR for the rule it breaks
    (Part 4 table 8), no NotifyReport follows, and the station keeps running."""
    async with station_up(csms, data_dir):
        mark = csms.mark()
        assert await call_error(csms, action, payload) in codes
        await assert_still_running(csms)
        assert csms.actions("CS001", "NotifyReport", mark) == []


# --- bounded: one report at a time, two waiting, the rest Rejected ------------------------------------------


async def test_report_requests_while_busy(csms: LoopbackCsms, data_dir: Path) -> None:
    """B07/B08 with a report in progress (the CSMS answers each NotifyReport only after 0.5 s): the same requestId
    again → Rejected, reasonCode DuplicateRequestId (the appendix's code for report requests); two more reports
    are Accepted and wait; a fourth → Rejected (busy, with additionalInfo). Once the CSMS answers promptly again
    the three reports are sent one after the other, in the order they were accepted, each complete."""
    ocpp = {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]}
    async with station_up(csms, data_dir):
        csms.set_response("NotifyReport", Delayed(0.5, {}))
        mark = csms.mark()
        assert (await call(csms, "GetReport", {"requestId": 1, **ocpp}))["status"] == "Accepted"
        again = await call(csms, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        assert again["status"] == "Rejected" and again["statusInfo"]["reasonCode"] == "DuplicateRequestId", again
        assert (await call(csms, "GetBaseReport", {"requestId": 2, "reportBase": "SummaryInventory"}))[
            "status"
        ] == "Accepted"
        assert (await call(csms, "GetReport", {"requestId": 3, **ocpp}))["status"] == "Accepted"
        busy = await call(csms, "GetBaseReport", {"requestId": 4, "reportBase": "FullInventory"})
        assert busy["status"] == "Rejected" and busy["statusInfo"]["reasonCode"] == "Unspecified", busy
        assert "busy" in busy["statusInfo"]["additionalInfo"], busy
        csms.set_response("NotifyReport", None)

        def all_sent() -> list[dict[str, Any]] | None:
            pages = csms.actions("CS001", "NotifyReport", mark)
            done = {p["requestId"] for p in pages if not p.get("tbc", False)}
            return pages if {1, 2, 3} <= done else None

        pages = await csms.trio.wait_for(all_sent, 30, what="the three accepted reports")
        assert 4 not in {p["requestId"] for p in pages}
        order = [p["requestId"] for p in pages]
        assert order == sorted(order), "one report at a time, in the order accepted"
        for request_id in (1, 2, 3):
            check_pages([p for p in pages if p["requestId"] == request_id], *CERTIFIED)
        answer, _ = await report(csms, "GetBaseReport", {"reportBase": "SummaryInventory"})
        assert answer["status"] == "Accepted", answer


async def test_reports_cut_by_a_lost_connection_free_their_places(csms: LoopbackCsms, data_dir: Path) -> None:
    """Three reports admitted (one sending, slowly; two waiting), then the CSMS drops the connection: after the
    station reconnects, a new report is Accepted and sent — the cut reports left no place taken."""
    ocpp = {"componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]}
    async with station_up(csms, data_dir):
        csms.set_response("NotifyReport", Delayed(0.5, {}))
        for request_id in (1, 2, 3):
            assert (await call(csms, "GetReport", {"requestId": request_id, **ocpp}))["status"] == "Accepted"
        assert (await call(csms, "GetReport", {"requestId": 4, **ocpp}))["status"] == "Rejected"
        before = len(csms.connections_snapshot("CS001"))
        await csms.trio.disconnect("CS001")
        await csms.trio.wait_for(
            lambda: len(csms.connections_snapshot("CS001")) > before and csms.is_connected("CS001"),
            15,
            what="the reconnection",
        )
        csms.set_response("NotifyReport", None)
        answer, pages = await report(csms, "GetBaseReport", {"reportBase": "SummaryInventory"})
        assert answer["status"] == "Accepted", answer
        check_pages(pages, *CERTIFIED)
