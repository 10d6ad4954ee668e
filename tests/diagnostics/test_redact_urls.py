"""Upload and download URLs carry FTP/HTTP credentials: the DEBUG frame log shows them as ***."""

from __future__ import annotations

import json

from appliance.util.redact import redact_frame


def test_url_credentials_are_hidden_in_frame_logs() -> None:
    get_log = [
        2,
        "1",
        "GetLog",
        {
            "logType": "DiagnosticsLog",
            "requestId": 1,
            "log": {"remoteLocation": "ftp://logs:s3cret-1@files.example:21/up/"},
        },
    ]
    firmware = [
        2,
        "2",
        "UpdateFirmware",
        {
            "requestId": 2,
            "firmware": {
                "location": "https://fw:s3cret-2@cdn.example/fw.img",
                "retrieveDateTime": "2026-01-01T00:00:00Z",
            },
        },
    ]
    shown = "\n".join(redact_frame(json.dumps(frame)) for frame in (get_log, firmware))
    assert "s3cret" not in shown
    assert "ftp://***@files.example:21/up/" in shown and "https://***@cdn.example/fw.img" in shown
    mail = redact_frame(json.dumps([2, "3", "DataTransfer", {"vendorId": "v", "data": "ops@example.com"}]))
    assert "ops@example.com" in mail, "only URLs lose what stands before the @"
