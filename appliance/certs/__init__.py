"""Certificates: the store of trusted roots, OCPP's certificate hash data, the station's own TLS identity (CSR,
renewal) and the `appliance certs` listing. Used by `blocks/certificates.py` (the M block and A02/A03)."""
