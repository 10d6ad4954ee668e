"""Keeping personal data and secrets out of logs: idTokens show only their last four characters, secrets none.

`redact_frame` is what the DEBUG frame log prints: the OCPP-J frame as JSON with every secret replaced by
``***`` (its length is not shown either) and every idToken masked. Secrets are recognised two ways, because
OCPP carries them two ways: as fields with a telling name (``password``, ``apnPassword``, ``key`` of a VPN,
``csr``, later private keys), and as the value of a device-model variable whose name says so
(SetVariables of ``SecurityCtrlr.BasicAuthPassword`` puts the password in a plain ``attributeValue``).
A frame that is not JSON is shown by its size only: a truncated frame may still hold a secret.
"""

from __future__ import annotations

import json
import re
from typing import Any

SECRET = "***"
#: Frames longer than this are cut in the log (a full report page is rarely what a reader wants).
MAX_LOGGED_CHARS = 4000
_SECRET_NAMES = frozenset({"key", "csr", "privatekey"})
_SECRET_PARTS = ("password", "secret")
#: Where a variable's value sits in the messages that carry one (Get/SetVariables, reports).
_VALUE_KEYS = ("attributeValue", "value")
#: user:password in a URL (GetLog's remoteLocation, UpdateFirmware's location): shown as ***.
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def mask(token: str) -> str:
    return "*" * max(len(token) - 4, 0) + token[-4:]


def is_secret_name(name: str) -> bool:
    """Whether a field or variable of this name holds a secret."""
    folded = name.casefold()
    return folded in _SECRET_NAMES or any(part in folded for part in _SECRET_PARTS)


def redact_payload(value: Any) -> Any:
    """A copy of an OCPP payload (or whole frame) safe to log."""
    if isinstance(value, list):
        return [redact_payload(item) for item in value]
    if not isinstance(value, dict):
        return value
    variable = value.get("variable")
    secret_variable = isinstance(variable, dict) and is_secret_name(str(variable.get("name", "")))
    result: dict[str, Any] = {}
    for key, item in value.items():
        if is_secret_name(str(key)) or (secret_variable and key in _VALUE_KEYS):
            result[key] = SECRET
        elif secret_variable and key == "variableAttribute" and isinstance(item, list):
            result[key] = [_hide_values(attribute) for attribute in item]
        elif key == "idToken" and isinstance(item, str):
            result[key] = mask(item)
        elif isinstance(item, str) and "@" in item:
            result[key] = _URL_USERINFO.sub(r"\1***@", item)
        else:
            result[key] = redact_payload(item)
    return result


def _hide_values(attribute: Any) -> Any:
    if not isinstance(attribute, dict):
        return attribute
    return {key: SECRET if key in _VALUE_KEYS else item for key, item in attribute.items()}


def redact_frame(text: str | bytes) -> str:
    """One OCPP-J frame for the DEBUG log: secrets hidden, idTokens masked, long frames cut."""
    try:
        shown = json.dumps(redact_payload(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
    except (ValueError, RecursionError):
        return f"<{len(text)} characters, not JSON>"
    if len(shown) > MAX_LOGGED_CHARS:
        return f"{shown[:MAX_LOGGED_CHARS]}… ({len(text)} characters)"
    return shown
