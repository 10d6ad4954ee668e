"""The lenient answer mode: each harmless deviation is normalised and named; everything else is refused as before."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from appliance.protocol import ErrorCode, OcppError, default_registry
from appliance.protocol.tolerance import Deviation, Normaliser, normalise_datetime

D = Deviation


@pytest.mark.parametrize(
    ("text", "canonical", "kinds"),
    [
        (
            "2026-12-01T18:56:22.344614",
            "2026-12-01T18:56:22.344Z",
            [D.TIMESTAMP_WITHOUT_OFFSET, D.TIMESTAMP_LONG_FRACTION],
        ),
        ("2026-12-01T18:56:22", "2026-12-01T18:56:22Z", [D.TIMESTAMP_WITHOUT_OFFSET]),
        ("2026-12-01T18:56:22+00:00", "2026-12-01T18:56:22Z", [D.TIMESTAMP_NUMERIC_OFFSET]),
        ("2026-12-01T18:56:22.5-05:30", "2026-12-02T00:26:22.500Z", [D.TIMESTAMP_NUMERIC_OFFSET]),
        ("2026-12-01t18:56:22z", "2026-12-01T18:56:22Z", [D.TIMESTAMP_LOWER_CASE]),
        (
            "2026-12-01 18:56:22.123456789Z",
            "2026-12-01T18:56:22.123Z",
            [D.TIMESTAMP_SPACE_SEPARATOR, D.TIMESTAMP_LONG_FRACTION],
        ),
    ],
)
def test_deviating_timestamps_are_rewritten_to_what_we_send(text: str, canonical: str, kinds: list[D]) -> None:
    assert normalise_datetime(text) == (canonical, kinds)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T18:56:22Z",
        "2026-12-01T18:56:22.1Z",  # canonical: left as they are
        "2026-02-30T18:56:22",
        "2026-12-01T24:00:00",
        "2026-12-01T18:56:22+24:00",
        "2026-12-01T23:59:60",  # not times
        "yesterday",
        "2026-12-01",
        "2026-12-01T18:56",
    ],
)
def test_canonical_or_impossible_timestamps_are_left_for_the_validator(text: str) -> None:
    assert normalise_datetime(text) is None


def test_boot_answer_of_a_python_csms_is_taken_and_every_deviation_named() -> None:
    answer = {
        "currentTime": "2026-12-01T18:56:22.344614",
        "interval": 300,
        "status": "accepted",
        "csmsVersion": "1",
        "statusInfo": {"reasonCode": "x", "customData": {"vendorId": "v", "free": 1}},
    }
    original = copy.deepcopy(answer)
    payload, found = default_registry().validate_response_lenient("BootNotification", answer)
    assert payload == {
        "currentTime": "2026-12-01T18:56:22.344Z",
        "interval": 300,
        "status": "Accepted",
        "statusInfo": {"reasonCode": "x", "customData": {"vendorId": "v", "free": 1}},
    }
    assert [(f.kind, f.path) for f in found] == [
        (D.TIMESTAMP_WITHOUT_OFFSET, "currentTime"),
        (D.TIMESTAMP_LONG_FRACTION, "currentTime"),
        (D.ENUM_CASE, "status"),
        (D.EXTRA_PROPERTY, "csmsVersion"),
    ]
    assert answer == original, "the received payload is not modified in place"


def test_nested_arrays_and_refs_are_walked() -> None:
    answer = {
        "getVariableResult": [
            {"attributeStatus": "ACCEPTED", "component": {"name": "C", "junk": 1}, "variable": {"name": "V"}}
        ]
    }
    payload, found = default_registry().validate_response_lenient("GetVariables", answer)
    assert payload["getVariableResult"][0]["attributeStatus"] == "Accepted"
    assert payload["getVariableResult"][0]["component"] == {"name": "C"}
    assert {(f.kind, f.path) for f in found} == {
        (D.ENUM_CASE, "getVariableResult[0].attributeStatus"),
        (D.EXTRA_PROPERTY, "getVariableResult[0].component.junk"),
    }


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"currentTime": "2026-02-30T00:00:00"}, ErrorCode.PropertyConstraintViolation),
        ({"currentTime": 1764615382}, ErrorCode.TypeConstraintViolation),
        ({}, ErrorCode.OccurrenceConstraintViolation),
    ],
)
def test_real_violations_in_answers_stay_errors(answer: dict[str, Any], code: ErrorCode) -> None:
    with pytest.raises(OcppError) as caught:
        default_registry().validate_response_lenient("Heartbeat", answer)
    assert caught.value.code is code


def test_unknown_enum_value_stays_an_error() -> None:
    with pytest.raises(OcppError) as caught:
        default_registry().validate_response_lenient(
            "BootNotification", {"currentTime": "2026-12-01T18:56:22Z", "interval": 1, "status": "Maybe"}
        )
    assert caught.value.code is ErrorCode.PropertyConstraintViolation


def test_ambiguous_enum_case_is_not_guessed() -> None:
    schema = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["kW", "KW"]}}}
    payload, found = Normaliser(schema).normalise({"unit": "kw"})
    assert payload == {"unit": "kw"} and found == []


def test_requests_from_the_csms_stay_strict() -> None:
    request = {"requestedMessage": "heartbeat"}
    with pytest.raises(OcppError) as caught:
        default_registry().validate_request("TriggerMessage", request)
    assert caught.value.code is ErrorCode.PropertyConstraintViolation
    with pytest.raises(OcppError) as caught:
        default_registry().validate_request(
            "ReserveNow",
            {"id": 1, "expiryDateTime": "2030-01-01T00:00:00", "idToken": {"idToken": "A", "type": "Central"}},
        )
    assert caught.value.code is ErrorCode.PropertyConstraintViolation
