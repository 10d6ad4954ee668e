"""DEBUG logging shows every frame in and out, and never a secret (issue 15 item 6)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from appliance.lab.csms import LoopbackCsms
from appliance.lab.process import PASSWORD
from appliance.util.redact import SECRET, redact_frame
from tests.conformance.helpers import STATION_ID, booted_station, set_item, set_variables

NEW_PASSWORD = "n3w-Secret-Passw0rd-99"
#: Loggers of the loopback CSMS and its libraries: the test's peer, not the station.
CSMS_LOGGERS = ("appliance.lab.csms", "websockets", "ocpp")


def station_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith(CSMS_LOGGERS)
    )


async def test_debug_log_of_a_password_change_never_shows_the_password(
    csms: LoopbackCsms, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with booted_station(csms, data_dir):
        csms.set_password(STATION_ID, NEW_PASSWORD)  # the CSMS expects the new one from the next connection
        [result] = await set_variables(csms, set_item("SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD))
        assert result["attributeStatus"] == "Accepted"
        await csms.trio.wait_for(lambda: len(csms.connections_snapshot(STATION_ID)) == 2, 10, what="reconnect")
        await csms.trio.wait_connected(STATION_ID)
    text = station_log(caplog)
    assert "frame in: [2," in text and '"SetVariables"' in text, "the CSMS's CALL is logged"
    assert "frame out: [2," in text and '"BootNotification"' in text, "our CALLs are logged"
    assert "frame out: [3," in text, "our answers are logged"
    assert f'"attributeValue":"{SECRET}"' in text
    for secret in (NEW_PASSWORD, PASSWORD):
        assert secret not in text
        assert base64.b64encode(f"{STATION_ID}:{secret}".encode()).decode() not in text


def test_secret_fields_of_every_kind_are_hidden_and_id_tokens_masked() -> None:
    profile = {
        "configurationSlot": 1,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": "wss://x",
            "messageTimeout": 30,
            "securityProfile": 1,
            "ocppInterface": "Wired0",
            "apn": {"apn": "a", "apnPassword": "apn-secret-1", "apnAuthentication": "AUTO"},
            "vpn": {"server": "v", "user": "u", "password": "vpn-secret-2", "key": "vpn-secret-3", "type": "IPSec"},
        },
    }
    report = {
        "requestId": 1,
        "generatedAt": "2024-01-01T00:00:00Z",
        "seqNo": 0,
        "reportData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "variableAttribute": [{"type": "Actual", "value": "report-secret-4"}],
            }
        ],
    }
    frames = [
        [2, "1", "SetNetworkProfile", profile],
        [2, "2", "NotifyReport", report],
        [2, "3", "SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----secret-5"}],
        [2, "4", "Authorize", {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}}],
    ]
    shown = "\n".join(redact_frame(json.dumps(frame)) for frame in frames)
    for n in range(1, 6):
        assert "secret-" + str(n) not in shown
    assert '"idToken":"****B2C3"' in shown and "04A1B2C3" not in shown
    assert '"apn":"a"' in shown and '"user":"u"' in shown, "only secrets are hidden"
    truncated = '[2,"x","SetVariables",{"setVariableData":[{"attributeValue":"abc"'
    assert redact_frame(truncated) == f"<{len(truncated)} characters, not JSON>"
