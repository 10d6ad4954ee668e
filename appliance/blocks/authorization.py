"""Functional block C (authorization): deciding whether an idToken may charge.

This is the one seam every authorization goes through (local RFID taps, remote starts with
AuthCtrlr.AuthorizeRemoteStart, stop-by-group checks). Online it asks the CSMS (Authorize); offline, or when
the CSMS does not answer, a token is not known to be Accepted and is refused. The authorization cache and the
local list (issue 4) plug in here, in front of and behind the online request.
"""

from __future__ import annotations

import logging

from appliance.link.link import Link
from appliance.link.rpc import CallFailed

log = logging.getLogger("appliance.authorization")


def mask(token: str) -> str:
    """idTokens are personal data: only the last four characters appear in logs."""
    return "*" * max(len(token) - 4, 0) + token[-4:]


class Authorizer:
    def __init__(self, link: Link) -> None:
        self._link = link

    async def authorize(self, id_token: dict) -> dict:
        """The idTokenInfo that applies to `id_token` now (status Accepted means it may charge)."""
        if self._link.online:
            try:
                answer = await self._link.call("Authorize", {"idToken": id_token})
            except CallFailed as exc:
                log.warning("Authorize for %s failed: %s; treating the token as unknown", mask(id_token["idToken"]),
                            exc)
            else:
                info = answer["idTokenInfo"]
                log.info("token %s: %s", mask(id_token["idToken"]), info["status"])
                return info
        log.info("token %s: offline and not known locally; refused", mask(id_token["idToken"]))
        return {"status": "Unknown"}
