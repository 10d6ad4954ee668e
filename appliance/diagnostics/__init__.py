"""Diagnostics (N01): the station's own log files, the bundle a GetLog uploads, and the upload clients."""
