"""Station security: the TLS context OCPP prescribes, security events and their persistent log."""
