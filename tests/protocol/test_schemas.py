"""Schema validation against the official OCPP 2.0.1 JSON schemas and the RPC error code of each violation."""

from __future__ import annotations

import copy
from typing import Any

import fastjsonschema
import jsonschema
import pytest

from appliance.protocol import (
    Direction,
    ErrorCode,
    OcppError,
    SchemaRegistry,
    default_registry,
    validate_request,
    validate_response,
)
from appliance.protocol import schemas as schemas_module
from appliance.timetext import is_rfc3339

REQ, RES = Direction.REQUEST, Direction.RESPONSE
NOW = "2024-05-06T10:20:30.123Z"
# "2024" in FULLWIDTH digits: Unicode \d matches them, RFC 3339 DIGIT does not.
FULLWIDTH_YEAR = "\uff12\uff10\uff12\uff14"
COMPONENT = {"name": "OCPPCommCtrlr"}
VARIABLE = {"name": "HeartbeatInterval"}
ID_TOKEN = {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}
CHARGING_PROFILE = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": [
        {
            "id": 1,
            "startSchedule": NOW,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3}],
        }
    ],
}

# Realistic payloads the station sends or receives in the Core profile (shapes as in Part 2/Part 4/Part 6).
VALID: list[tuple[str, Direction, dict[str, Any]]] = [
    ("BootNotification", REQ, {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}),
    (
        "BootNotification",
        REQ,
        {
            "reason": "FirmwareUpdate",
            "chargingStation": {
                "model": "SingleSocketCharger",
                "vendorName": "VendorX",
                "serialNumber": "SN-0001",
                "firmwareVersion": "1.2.3",
                "modem": {"iccid": "8931", "imsi": "2041"},
            },
        },
    ),
    (
        "BootNotification",
        RES,
        {"currentTime": "2013-02-01T20:53:32.486Z", "interval": 300, "status": "Accepted"},
    ),
    (
        "BootNotification",
        RES,
        {
            "currentTime": NOW,
            "interval": 10,
            "status": "Pending",
            "statusInfo": {"reasonCode": "Maintenance", "additionalInfo": "back soon"},
        },
    ),
    ("Heartbeat", REQ, {}),
    ("Heartbeat", RES, {"currentTime": "2024-05-06T10:20:30+02:00"}),
    ("Heartbeat", RES, {"currentTime": "2024-02-29t23:59:59z"}),
    (
        "StatusNotification",
        REQ,
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    ),
    ("StatusNotification", RES, {}),
    ("Authorize", REQ, {"idToken": ID_TOKEN}),
    ("Authorize", RES, {"idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": NOW}}),
    (
        "TransactionEvent",
        REQ,
        {
            "eventType": "Started",
            "timestamp": NOW,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "offline": False,
            "numberOfPhasesUsed": 3,
            "transactionInfo": {"transactionId": "f0e1d2c3", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": ID_TOKEN,
            "meterValue": [
                {
                    "timestamp": NOW,
                    "sampledValue": [
                        {
                            "value": 1234.5,
                            "measurand": "Energy.Active.Import.Register",
                            "context": "Transaction.Begin",
                            "unitOfMeasure": {"unit": "Wh"},
                        },
                        {"value": 230, "measurand": "Voltage", "phase": "L1-N"},
                    ],
                }
            ],
        },
    ),
    ("TransactionEvent", RES, {"totalCost": 1.5, "idTokenInfo": {"status": "Accepted"}}),
    ("MeterValues", REQ, {"evseId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": 0}]}]}),
    (
        "GetVariables",
        REQ,
        {"getVariableData": [{"component": COMPONENT, "variable": VARIABLE}] * 10},
    ),
    (
        "GetVariables",
        RES,
        {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "60",
                    "component": COMPONENT,
                    "variable": VARIABLE,
                }
            ]
        },
    ),
    (
        "SetVariables",
        REQ,
        {
            "setVariableData": [
                {
                    "attributeValue": "30",
                    "attributeType": "Actual",
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Power"},
                }
            ]
        },
    ),
    (
        "SetVariables",
        RES,
        {"setVariableResult": [{"attributeStatus": "RebootRequired", "component": COMPONENT, "variable": VARIABLE}]},
    ),
    ("GetBaseReport", REQ, {"requestId": 7, "reportBase": "FullInventory"}),
    ("GetBaseReport", RES, {"status": "Accepted"}),
    (
        "NotifyReport",
        REQ,
        {
            "requestId": 7,
            "generatedAt": NOW,
            "seqNo": 0,
            "tbc": False,
            "reportData": [
                {
                    "component": COMPONENT,
                    "variable": VARIABLE,
                    "variableAttribute": [
                        {
                            "type": "Actual",
                            "value": "60",
                            "mutability": "ReadWrite",
                            "persistent": True,
                            "constant": False,
                        }
                    ],
                    "variableCharacteristics": {
                        "dataType": "integer",
                        "supportsMonitoring": False,
                        "unit": "s",
                    },
                }
            ],
        },
    ),
    (
        "RequestStartTransaction",
        REQ,
        {"remoteStartId": 1, "idToken": ID_TOKEN, "evseId": 1, "chargingProfile": CHARGING_PROFILE},
    ),
    ("RequestStartTransaction", RES, {"status": "Accepted", "transactionId": "f0e1d2c3"}),
    ("RequestStopTransaction", REQ, {"transactionId": "f0e1d2c3"}),
    ("SetChargingProfile", REQ, {"evseId": 0, "chargingProfile": CHARGING_PROFILE}),
    ("Reset", REQ, {"type": "OnIdle", "evseId": 2}),
    ("Reset", RES, {"status": "Scheduled"}),
    ("TriggerMessage", REQ, {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}),
    ("ChangeAvailability", REQ, {"operationalStatus": "Inoperative", "evse": {"id": 1}}),
    ("UnlockConnector", REQ, {"evseId": 1, "connectorId": 1}),
    ("ClearCache", REQ, {}),
    ("ClearCache", RES, {"status": "Accepted"}),
    (
        "SendLocalList",
        REQ,
        {
            "versionNumber": 3,
            "updateType": "Full",
            "localAuthorizationList": [{"idToken": ID_TOKEN, "idTokenInfo": {"status": "Blocked"}}],
        },
    ),
    ("GetLocalListVersion", RES, {"versionNumber": 3}),
    (
        "UpdateFirmware",
        REQ,
        {
            "requestId": 4,
            "retries": 2,
            "retryInterval": 30,
            "firmware": {
                "location": "ftp://fw.example.com/fw.bin",
                "retrieveDateTime": NOW,
                "signingCertificate": "-----BEGIN CERTIFICATE-----",
                "signature": "c2ln",
            },
        },
    ),
    ("FirmwareStatusNotification", REQ, {"status": "Downloading", "requestId": 4}),
    (
        "GetLog",
        REQ,
        {
            "logType": "DiagnosticsLog",
            "requestId": 5,
            "log": {"remoteLocation": "https://x/y", "oldestTimestamp": NOW},
        },
    ),
    ("LogStatusNotification", REQ, {"status": "Uploaded", "requestId": 5}),
    ("SecurityEventNotification", REQ, {"type": "StartupOfTheDevice", "timestamp": NOW}),
    (
        "SetNetworkProfile",
        REQ,
        {
            "configurationSlot": 2,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example.com/ocpp",
                "messageTimeout": 30,
                "securityProfile": 2,
                "ocppInterface": "Wired0",
            },
        },
    ),
    ("InstallCertificate", REQ, {"certificateType": "CSMSRootCertificate", "certificate": "-----BEGIN..."}),
    ("DataTransfer", REQ, {"vendorId": "com.example", "messageId": "m", "data": [1, {"any": ["json"]}]}),
    ("DataTransfer", RES, {"status": "UnknownVendorId"}),
    (
        "NotifyEVChargingNeeds",
        REQ,
        {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": {
                    "evMaxCurrent": 100,
                    "evMaxVoltage": 400,
                    "stateOfCharge": 100,
                    "fullSoC": 0,
                },
            },
        },
    ),
]

# (action, direction, payload, expected code, field path named in the description)
INVALID: list[tuple[str, Direction, Any, ErrorCode, str]] = [
    # wrong JSON type
    (
        "StatusNotification",
        REQ,
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": "1", "connectorId": 1},
        ErrorCode.TypeConstraintViolation,
        "evseId",
    ),
    (
        "StatusNotification",
        REQ,
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": True, "connectorId": 1},
        ErrorCode.TypeConstraintViolation,
        "evseId",
    ),
    (
        "StatusNotification",
        REQ,
        {"timestamp": NOW, "connectorStatus": "Available", "evseId": 1.5, "connectorId": 1},
        ErrorCode.TypeConstraintViolation,
        "evseId",
    ),
    (
        "BootNotification",
        REQ,
        {"reason": "PowerUp", "chargingStation": {"model": 5, "vendorName": "V"}},
        ErrorCode.TypeConstraintViolation,
        "chargingStation.model",
    ),
    (
        "GetVariables",
        REQ,
        {"getVariableData": {"component": COMPONENT, "variable": VARIABLE}},
        ErrorCode.TypeConstraintViolation,
        "getVariableData",
    ),
    (
        "MeterValues",
        REQ,
        {"evseId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "1"}]}]},
        ErrorCode.TypeConstraintViolation,
        "meterValue[0].sampledValue[0].value",
    ),
    ("Heartbeat", REQ, [], ErrorCode.TypeConstraintViolation, "payload"),
    ("Heartbeat", REQ, None, ErrorCode.TypeConstraintViolation, "payload"),
    # value outside its enum / too long / out of range / bad date-time
    ("Reset", REQ, {"type": "Soft"}, ErrorCode.PropertyConstraintViolation, "type"),
    ("Reset", REQ, {"type": "immediate"}, ErrorCode.PropertyConstraintViolation, "type"),
    (
        "BootNotification",
        REQ,
        {"reason": "PowerUp", "chargingStation": {"model": "M" * 21, "vendorName": "V"}},
        ErrorCode.PropertyConstraintViolation,
        "chargingStation.model",
    ),
    (
        "Authorize",
        REQ,
        {"idToken": {"idToken": "x" * 37, "type": "ISO14443"}},
        ErrorCode.PropertyConstraintViolation,
        "idToken.idToken",
    ),
    (
        "GetVariables",
        REQ,
        {
            "getVariableData": [{"component": COMPONENT, "variable": VARIABLE}] * 3
            + [{"component": {"name": "C" * 51}, "variable": VARIABLE}]
        },
        ErrorCode.PropertyConstraintViolation,
        "getVariableData[3].component.name",
    ),
    (
        "NotifyEVChargingNeeds",
        REQ,
        {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": {"evMaxCurrent": 1, "evMaxVoltage": 1, "stateOfCharge": 101},
            },
        },
        ErrorCode.PropertyConstraintViolation,
        "chargingNeeds.dcChargingParameters.stateOfCharge",
    ),
    (
        "NotifyEVChargingNeeds",
        REQ,
        {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": {"evMaxCurrent": 1, "evMaxVoltage": 1, "bulkSoC": -1},
            },
        },
        ErrorCode.PropertyConstraintViolation,
        "chargingNeeds.dcChargingParameters.bulkSoC",
    ),
    ("Heartbeat", RES, {"currentTime": "yesterday"}, ErrorCode.PropertyConstraintViolation, "currentTime"),
    (
        "Heartbeat",
        RES,
        {"currentTime": "2024-05-06T10:20:30"},
        ErrorCode.PropertyConstraintViolation,
        "currentTime",
    ),
    (
        "Heartbeat",
        RES,
        {"currentTime": "2023-02-29T10:20:30Z"},
        ErrorCode.PropertyConstraintViolation,
        "currentTime",
    ),
    (
        "Heartbeat",
        RES,
        {"currentTime": FULLWIDTH_YEAR + "-05-06T10:20:30Z"},
        ErrorCode.PropertyConstraintViolation,
        "currentTime",
    ),
    (
        "Heartbeat",
        RES,
        {"currentTime": "2024-05-06T10:20:30+0200"},
        ErrorCode.PropertyConstraintViolation,
        "currentTime",
    ),
    (
        "StatusNotification",
        REQ,
        {"timestamp": "2024-05-06 10:20:30Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ErrorCode.PropertyConstraintViolation,
        "timestamp",
    ),
    # required field missing
    (
        "BootNotification",
        REQ,
        {"chargingStation": {"model": "M", "vendorName": "V"}},
        ErrorCode.OccurrenceConstraintViolation,
        "reason",
    ),
    (
        "BootNotification",
        REQ,
        {"reason": "PowerUp", "chargingStation": {"model": "M"}},
        ErrorCode.OccurrenceConstraintViolation,
        "chargingStation.vendorName",
    ),
    (
        "SetVariables",
        REQ,
        {"setVariableData": [{"component": COMPONENT, "variable": VARIABLE}]},
        ErrorCode.OccurrenceConstraintViolation,
        "setVariableData[0].attributeValue",
    ),
    ("Heartbeat", RES, {}, ErrorCode.OccurrenceConstraintViolation, "currentTime"),
    # array cardinality
    (
        "GetVariables",
        REQ,
        {"getVariableData": []},
        ErrorCode.OccurrenceConstraintViolation,
        "getVariableData",
    ),
    (
        "GetReport",
        REQ,
        {"requestId": 1, "componentCriteria": ["Active"] * 5},
        ErrorCode.OccurrenceConstraintViolation,
        "componentCriteria",
    ),
    (
        "Authorize",
        REQ,
        {
            "idToken": ID_TOKEN,
            "iso15118CertificateHashData": [
                {
                    "hashAlgorithm": "SHA256",
                    "issuerNameHash": "a",
                    "issuerKeyHash": "b",
                    "serialNumber": "c",
                    "responderURL": "http://x",
                }
            ]
            * 5,
        },
        ErrorCode.OccurrenceConstraintViolation,
        "iso15118CertificateHashData",
    ),
    # property the message does not have
    ("Heartbeat", RES, {"currentTime": NOW, "interval": 5}, ErrorCode.FormatViolation, "interval"),
    ("Heartbeat", REQ, {"foo": 1}, ErrorCode.FormatViolation, "foo"),
    (
        "GetVariables",
        REQ,
        {"getVariableData": [{"component": {"name": "C", "Name": "x"}, "variable": VARIABLE}]},
        ErrorCode.FormatViolation,
        "getVariableData[0].component.Name",
    ),
    # customData keeps its one requirement
    (
        "Heartbeat",
        REQ,
        {"customData": {"extra": 1}},
        ErrorCode.OccurrenceConstraintViolation,
        "customData.vendorId",
    ),
    (
        "Heartbeat",
        REQ,
        {"customData": {"vendorId": "v" * 256}},
        ErrorCode.PropertyConstraintViolation,
        "customData.vendorId",
    ),
]


def error_of(action: str, direction: Direction, payload: Any) -> OcppError:
    validate = default_registry().validate_request if direction is REQ else default_registry().validate_response
    with pytest.raises(OcppError) as caught:
        validate(action, payload)
    return caught.value


def _case_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}{case[1].value}"


# --- the registry --------------------------------------------------------------------------------------


def test_registry_knows_the_64_actions_of_ocpp201() -> None:
    actions = default_registry().actions
    assert isinstance(actions, frozenset)
    assert len(actions) == 64
    assert {
        "BootNotification",
        "Heartbeat",
        "TransactionEvent",
        "GetVariables",
        "SetDisplayMessage",
    } <= actions
    assert not any(action.endswith(("Request", "Response")) for action in actions)


def test_every_schema_of_the_package_compiles() -> None:
    registry = SchemaRegistry()
    registry.compile_all()
    for action in registry.actions:
        for direction in Direction:
            assert registry.schema(action, direction)["$schema"] == "http://json-schema.org/draft-06/schema#"


def test_schemas_compile_once_and_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain validators once per schema; a detailed one only to explain a rejection, then reused."""
    compiled: list[tuple[str, bool]] = []
    real_compile = fastjsonschema.compile

    def counting_compile(definition: dict[str, Any], **kwargs: Any) -> Any:
        compiled.append((str(sorted(definition["properties"])), kwargs["detailed_exceptions"]))
        return real_compile(definition, **kwargs)

    monkeypatch.setattr(schemas_module.fastjsonschema, "compile", counting_compile)
    registry = SchemaRegistry()
    assert compiled == []
    for _ in range(3):
        registry.validate_request("Heartbeat", {})
        registry.validate_response("Heartbeat", {"currentTime": NOW})
    assert [detailed for _, detailed in compiled] == [False, False]
    for _ in range(3):
        with pytest.raises(OcppError) as raised:
            registry.validate_response("Heartbeat", {})
        assert raised.value.code is ErrorCode.OccurrenceConstraintViolation
        assert raised.value.details == {"field": "currentTime", "constraint": "required"}
    assert compiled[2:] == [("['currentTime', 'customData']", True)]


def test_explaining_keeps_only_the_last_few_detailed_validators(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSMS sending bad messages of many actions must not make the station keep a detailed validator each."""
    detailed: list[str] = []
    real_compile = fastjsonschema.compile

    def counting_compile(definition: dict[str, Any], **kwargs: Any) -> Any:
        if kwargs["detailed_exceptions"]:
            detailed.append(str(sorted(definition["properties"])))
        return real_compile(definition, **kwargs)

    monkeypatch.setattr(schemas_module.fastjsonschema, "compile", counting_compile)
    registry = SchemaRegistry()
    actions = ["Reset", "ClearCache", "GetLocalListVersion", "UnlockConnector", "TriggerMessage", "GetLog"]
    for action in actions:
        assert not registry.accepts(action, Direction.REQUEST, {"unknownKey": 1})
        assert registry.explain(action, Direction.REQUEST, {"unknownKey": 1}).code in set(ErrorCode)
    assert len(detailed) == len(actions)
    # The last four are kept: explaining them again compiles nothing; the first one was dropped.
    for action in actions[-schemas_module._EXPLAINERS :]:
        registry.explain(action, Direction.REQUEST, {"unknownKey": 1})
    assert len(detailed) == len(actions)
    registry.explain(actions[0], Direction.REQUEST, {"unknownKey": 1})
    assert len(detailed) == len(actions) + 1


def test_annotations_are_dropped_but_a_property_named_like_one_is_kept() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "$id": "urn:x",
        "comment": "OCPP 2.0.1 FINAL",
        "type": "object",
        "properties": {
            "description": {"description": "a property that is called description", "type": "string"},
            "title": {"type": "integer", "javaType": "Integer"},
        },
        "required": ["description"],
    }
    assert schemas_module._without_annotations(schema) == {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "$id": "urn:x",
        "type": "object",
        "properties": {"description": {"type": "string"}, "title": {"type": "integer"}},
        "required": ["description"],
    }


def test_the_plain_and_the_detailed_validator_agree_on_every_schemas_examples() -> None:
    """Every rejection the plain validator makes, the detailed one explains with a rule of its own."""
    registry = SchemaRegistry()
    bad_payloads: list[Any] = [{}, {"customData": 5}, {"zz": 1}, [], "x", None]
    for action in sorted(registry.actions):
        for direction in Direction:
            for payload in bad_payloads:
                if registry.accepts(action, direction, payload):
                    continue
                error = registry.explain(action, direction, payload)
                assert error.details and error.details["constraint"], (action, direction, payload)


def test_prepare_compiles_both_halves_of_one_action_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the link does off the event loop on an action's first use: both schemas, once, and no others."""
    compiled: list[str] = []
    real_compile = fastjsonschema.compile

    def counting_compile(definition: dict[str, Any], **kwargs: Any) -> Any:
        compiled.append(str(sorted(definition["properties"])))
        return real_compile(definition, **kwargs)

    monkeypatch.setattr(schemas_module.fastjsonschema, "compile", counting_compile)
    registry = SchemaRegistry()
    assert not registry.compiled("Heartbeat")
    registry.prepare("Heartbeat")
    assert registry.compiled("Heartbeat") and not registry.compiled("BootNotification")
    registry.prepare("Heartbeat")
    registry.validate_request("Heartbeat", {})
    registry.validate_response("Heartbeat", {"currentTime": NOW})
    assert compiled == ["['customData']", "['currentTime', 'customData']"]
    # An unknown action has nothing to prepare; validating it still answers NotImplemented.
    registry.prepare("NoSuchAction")
    assert registry.compiled("NoSuchAction")
    with pytest.raises(OcppError) as raised:
        registry.validate_request("NoSuchAction", {})
    assert raised.value.code is ErrorCode.NotImplemented


def test_default_registry_is_shared() -> None:
    assert default_registry() is default_registry()


@pytest.mark.parametrize("action", ["Foo", "heartbeat", "HeartbeatRequest", "", "../Heartbeat", "x" * 10_000])
def test_unknown_action_is_not_implemented(action: str) -> None:
    for direction in Direction:
        error = error_of(action, direction, {})
        assert error.code is ErrorCode.NotImplemented
        assert len(error.description) <= 255


def test_every_schema_checks_required_and_unknown_fields() -> None:
    """Every one of the 128 schemas: an empty payload misses exactly its required fields, an unknown key
    is refused -- so the mapping holds beyond the hand-picked samples."""
    registry = default_registry()
    for action in sorted(registry.actions):
        for direction in Direction:
            validate = registry.validate_request if direction is REQ else registry.validate_response
            required = registry.schema(action, direction).get("required", [])
            if required:
                with pytest.raises(OcppError) as caught:
                    validate(action, {})
                assert caught.value.code is ErrorCode.OccurrenceConstraintViolation
                assert caught.value.details["field"] in required
            else:
                validate(action, {})
                with pytest.raises(OcppError) as caught:
                    validate(action, {"noSuchField": 1})
                assert caught.value.code is ErrorCode.FormatViolation
                assert caught.value.details["field"] == "noSuchField"


# --- acceptance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "direction", "payload"), VALID, ids=[_case_id(c) for c in VALID])
def test_valid_payloads_pass(action: str, direction: Direction, payload: dict[str, Any]) -> None:
    if direction is REQ:
        validate_request(action, payload)
    else:
        validate_response(action, payload)


def test_custom_data_with_unknown_keys_is_accepted_everywhere() -> None:
    """TC_P_03: the station must accept customData it does not understand, at any depth."""
    custom = {"vendorId": "com.example", "anything": {"nested": [1, "two", None]}, "flag": True}
    validate_request(
        "BootNotification",
        {
            "customData": custom,
            "reason": "PowerUp",
            "chargingStation": {
                "customData": custom,
                "model": "M",
                "vendorName": "V",
                "modem": {"customData": custom},
            },
        },
    )
    validate_request(
        "GetVariables",
        {
            "customData": custom,
            "getVariableData": [
                {
                    "customData": custom,
                    "component": {"customData": custom, "name": "C", "evse": {"id": 1, "customData": custom}},
                    "variable": {"customData": custom, "name": "V"},
                }
            ],
        },
    )
    validate_response("Heartbeat", {"customData": custom, "currentTime": NOW})


def test_validation_does_not_fill_in_schema_defaults() -> None:
    payload = {"getVariableData": [{"component": COMPONENT, "variable": VARIABLE}]}
    before = copy.deepcopy(payload)
    validate_request("GetVariables", payload)
    assert payload == before  # the schema's default attributeType "Actual" was not written in


def test_integral_float_is_an_integer_per_draft06() -> None:
    validate_request("Reset", {"type": "OnIdle", "evseId": 1.0})


# --- rejection and its code ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "direction", "payload", "code", "path"), INVALID, ids=[f"{c[3].value}-{c[4]}" for c in INVALID]
)
def test_violation_maps_to_rpc_error_code(
    action: str, direction: Direction, payload: Any, code: ErrorCode, path: str
) -> None:
    error = error_of(action, direction, payload)
    assert error.code is code
    assert error.description.startswith(f"{path}: ")
    assert error.details["field"] == ("" if path == "payload" else path)


def test_description_never_echoes_huge_values() -> None:
    huge = "Z" * 100_000
    cases = [
        ("BootNotification", {"reason": "PowerUp", "chargingStation": {"model": huge, "vendorName": "V"}}),
        ("Reset", {"type": huge}),
        ("Heartbeat", {huge: 1}),
        ("Heartbeat", {"customData": {"vendorId": huge}}),
    ]
    for action, payload in cases:
        error = error_of(action, REQ, payload)
        assert len(error.description) <= 255
        assert "Z" * 50 not in error.description
        assert "Z" * 50 not in repr(error.details)


def test_type_error_says_what_was_expected_and_got() -> None:
    error = error_of("Reset", REQ, {"type": "OnIdle", "evseId": "2"})
    assert error.description == "evseId: expected integer, got string"


# --- agreement with jsonschema -------------------------------------------------------------------------


def _jsonschema_accepts(action: str, direction: Direction, payload: Any) -> bool:
    # Same date-time rule on both sides: jsonschema has no RFC 3339 checker without an optional package.
    formats = jsonschema.FormatChecker(formats=())
    formats.checks("date-time")(is_rfc3339)
    schema = default_registry().schema(action, direction)
    return jsonschema.Draft6Validator(schema, format_checker=formats).is_valid(payload)


@pytest.mark.parametrize(
    ("action", "direction", "payload", "accepted"),
    [(a, d, p, True) for a, d, p in VALID] + [(a, d, p, False) for a, d, p, _, _ in INVALID],
)
def test_fastjsonschema_agrees_with_jsonschema(action: str, direction: Direction, payload: Any, accepted: bool) -> None:
    """jsonschema, the reference implementation, cross-checks what fastjsonschema accepts and refuses."""
    assert _jsonschema_accepts(action, direction, payload) is accepted


# --- date-time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-06T10:20:30Z",
        "2024-05-06T10:20:30.1+02:00",
        "2024-05-06t10:20:30z",
        "2024-02-29T00:00:00-23:59",
        "2024-05-06T10:20:30.123456789Z",
    ],
)
def test_rfc3339_accepts(text: str) -> None:
    assert is_rfc3339(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-06",
        "2024-05-06T10:20:30",
        "2024-05-06T10:20Z",
        "2024-13-06T10:20:30Z",
        "2024-04-31T10:20:30Z",
        "2024-05-06T24:00:00Z",
        "2024-05-06T10:60:00Z",
        "2024-05-06T10:20:60Z",
        "2024-05-06T10:20:30+24:00",
        "2024-05-06T10:20:30+02:60",
        "2024-05-06T10:20:30+0200",
        "0000-01-01T00:00:00Z",
        "2024-05-06T10:20:30Z\n",
        " 2024-05-06T10:20:30Z",
        "2024-05-06T10:20:30.Z",
        FULLWIDTH_YEAR + "-05-06T10:20:30Z",
        "2024-05-06X10:20:30Z",
    ],
)
def test_rfc3339_rejects(text: str) -> None:
    assert not is_rfc3339(text)
