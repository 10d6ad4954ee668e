"""Structured log lines on stderr (logfmt), one event per line, for journald and for people.

    ts=2026-11-24T01:42:00.123Z level=info logger=appliance.link msg="connected to ws://…/CS001"

Tracebacks go into an `exc=` field with newlines escaped, so one event stays one line and a log shipper
never splits it.
"""

from __future__ import annotations

import logging
import sys

from appliance.timetext import format_timestamp


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = format_timestamp(record.created)
        parts = [
            f"ts={stamp}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The libraries' own chatter (every frame) is only useful when debugging them.
    for noisy in ("trio-websocket", "websockets", "ocpp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
