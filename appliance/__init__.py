"""OCPP 2.0.1 Charging Station firmware: a single-process Trio appliance with a write-ahead SQLite journal."""

__version__ = "0.1.0"
