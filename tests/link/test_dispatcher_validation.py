"""How the dispatcher checks a CSMS request: the plain validator on the event loop, and the detailed one, which
says why a request is refused, compiled and run on a worker thread (tens of milliseconds for the big schemas,
which a CSMS sending bad requests must not get to stall the station's loop for)."""

from __future__ import annotations

import threading
from typing import Any

import fastjsonschema
import pytest

from appliance.link.rpc import Dispatcher
from appliance.protocol import Call, CallError, CallResult, SchemaRegistry
from appliance.protocol import schemas as schemas_module


async def test_a_refused_request_is_explained_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled_on: list[tuple[bool, bool]] = []  # (detailed, on the Trio thread)
    real_compile = fastjsonschema.compile
    loop_thread = threading.get_ident()

    def recording_compile(definition: dict[str, Any], **kwargs: Any) -> Any:
        compiled_on.append((kwargs["detailed_exceptions"], threading.get_ident() == loop_thread))
        return real_compile(definition, **kwargs)

    monkeypatch.setattr(schemas_module.fastjsonschema, "compile", recording_compile)
    dispatcher = Dispatcher(SchemaRegistry())
    handled: list[dict] = []

    async def handler(payload: dict) -> dict:
        handled.append(payload)
        return {
            "setVariableResult": [
                {"attributeStatus": "Accepted", "component": {"name": "C"}, "variable": {"name": "V"}}
            ]
        }

    dispatcher.register("SetVariables", handler)
    bad = {"setVariableData": [{"attributeValue": "1", "component": {"name": "C"}}]}  # no `variable`
    answer, reply = await dispatcher.handle(Call("m1", "SetVariables", bad))
    assert isinstance(answer, CallError) and reply is None
    assert answer.code == "OccurrenceConstraintViolation"
    assert answer.details == {"field": "setVariableData[0].variable", "constraint": "required"}
    assert handled == []
    # Both plain validators (prepare, on a thread), then the detailed request validator, on a thread too.
    assert [detailed for detailed, _ in compiled_on] == [False, False, True]
    assert not any(on_loop for _, on_loop in compiled_on)

    # A good request afterwards goes through the plain validator alone.
    good = {"setVariableData": [{"attributeValue": "1", "component": {"name": "C"}, "variable": {"name": "V"}}]}
    answer, _ = await dispatcher.handle(Call("m2", "SetVariables", good))
    assert isinstance(answer, CallResult)
    assert handled == [good] and len(compiled_on) == 3
