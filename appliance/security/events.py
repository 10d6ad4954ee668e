"""The security events OCPP names (Part 2 appendix "Security Events"), and which of them are critical.

Critical events must reach the CSMS (A04.FR.02): they are journaled like TransactionEvents. Every event, critical
or not, goes into the station's security log (`seclog`), which GetLog(SecurityLog) uploads. A type not in the
appendix (a vendor's own) is treated as non-critical: only the log sees it, unless the caller says otherwise.
"""

from __future__ import annotations

#: type → critical, exactly the appendix's table (security_events.csv).
STANDARD: dict[str, bool] = {
    "FirmwareUpdated": True,
    "FailedToAuthenticateAtCsms": False,
    "CsmsFailedToAuthenticate": False,
    "SettingSystemTime": True,
    "StartupOfTheDevice": True,
    "ResetOrReboot": True,
    "SecurityLogWasCleared": True,
    "ReconfigurationOfSecurityParameters": False,
    "MemoryExhaustion": True,
    "InvalidMessages": False,
    "AttemptedReplayAttacks": False,
    "TamperDetectionActivated": True,
    "InvalidFirmwareSignature": True,
    "InvalidFirmwareSigningCertificate": True,
    "InvalidCsmsCertificate": True,
    "InvalidChargingStationCertificate": True,
    "InvalidTLSVersion": True,
    "InvalidTLSCipherSuite": True,
    "MaintenanceLoginAccepted": True,
    "MaintenanceLoginFailed": True,
}

#: SecurityEventNotificationRequest limits (schema): type ≤ 50, techInfo ≤ 255 characters.
MAX_TYPE = 50
MAX_TECH_INFO = 255


def is_critical(kind: str) -> bool:
    return STANDARD.get(kind, False)


def clip(text: str, limit: int) -> str:
    """Fit a text into a schema limit, marking the cut (a long TLS error must not make the message invalid)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
