"""Functional blocks M (certificate management: M03 get, M04 delete, M05 install) and A02/A03 (the station's
own certificate, renewed through the CSMS for Security Profile 3).

Roots live in `certs.store` (rows, served from memory); the station's key and certificate in
`certs.identity` (files 0600). This module holds the OCPP decisions:

* InstallCertificate of a CSMS or manufacturer root: valid now, a CA, self-signed, else Rejected (M05.FR.07);
  a full store is Failed with OutOfStorage (the limit is CertificateEntries' maxLimit). V2G and MO roots
  (ISO 15118) are Rejected: this station does not do Plug & Charge.
* GetInstalledCertificateIds: SHA-256 hash data of every matching root, NotFound with no list when none.
* DeleteCertificate: matched in the request's hash algorithm, hex in any case; the last CSMS root and the
  station's own certificate are never deleted (AQ-1; M04.FR.06) — Failed, not NotFound, so the CSMS learns why.
* Renewal (A02/A03): on TriggerMessage SignChargingStationCertificate, or when the certificate has less than
  30 days left (checked at every accepted boot and every 12 h), a fresh EC P-256 key and a CSR (CN = serial
  number, O = SecurityCtrlr.OrganizationName) go out in SignCertificate. The same CSR is sent again after
  CertSigningWaitMinimum, then twice that, …, CertSigningRepeatTimes times, until a CertificateSigned comes;
  Rejected ends the round at once. CertificateSigned is checked (PEM, size, the pending key, validity, chain to
  an installed CSMS root): Accepted, stored, then a reconnect with the new certificate when the connection uses
  profile 3; otherwise Rejected and the critical security event InvalidChargingStationCertificate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import trio

from appliance.blocks.base import Block, TriggerHandler, TriggerRequest
from appliance.blocks.security import SecurityEvents
from appliance.certs import hashdata
from appliance.certs.identity import StationIdentity
from appliance.certs.store import CSMS_ROOT, ROOT_USES, CertificateStore, Outcome
from appliance.clock import StationClock
from appliance.devicemodel import settings as keys
from appliance.devicemodel.model import Provider, Validator
from appliance.devicemodel.settings import Settings
from appliance.link.link import Link, OnlineService
from appliance.link.rpc import CallErrorReply, CallTimeout, Handler, Reply

log = logging.getLogger("appliance.certs")

#: GetCertificateIdUseEnumType: what "all types" means when the CSMS names none.
ALL_ID_USES = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "V2GCertificateChain",
    "ManufacturerRootCertificate",
)
STATION_CERTIFICATE = "ChargingStationCertificate"
RENEW_BEFORE_S = 30 * 86400
EXPIRY_CHECK_EVERY_S = 12 * 3600


class Certificates(Block):
    migrations = ("0007_certificates.sql",)

    def __init__(
        self,
        *,
        store: CertificateStore,
        identity: StationIdentity,
        link: Link,
        clock: StationClock,
        settings: Settings,
        security_events: SecurityEvents,
        common_name: str,
        slot_profile: Callable[[int], int | None],
    ) -> None:
        self._store = store
        self._identity = identity
        self._link = link
        self._clock = clock
        self._settings = settings
        self._events = security_events
        self._common_name = common_name
        self._slot_profile = slot_profile
        self._wanted = trio.Event()  # a renewal round is asked for (trigger or expiry)
        self._answered = trio.Event()  # a CertificateSigned ended the current round
        self._csr: str | None = None  # the round's CSR, sent again on every retry (TC_A_23: one key)
        self._next_expiry_check = -math.inf

    # --- what the block offers -----------------------------------------------------------------------

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "InstallCertificate": self._install,
            "GetInstalledCertificateIds": self._get_ids,
            "DeleteCertificate": self._delete,
            "CertificateSigned": self._certificate_signed,
        }

    def triggers(self) -> Mapping[str, TriggerHandler]:
        return {"SignChargingStationCertificate": self._trigger_sign}

    def online_services(self) -> Mapping[str, OnlineService]:
        return {"certificate renewal": self._renewal_service}

    def live_variables(self) -> Mapping[str, Provider]:
        return {"SecurityCtrlr.CertificateEntries": self.entries}

    def validators(self) -> Mapping[str, Validator]:
        return {"OCPPCommCtrlr.NetworkConfigurationPriority": self._priority_needs_certificate}

    def entries(self) -> int:
        """SecurityCtrlr.CertificateEntries: the installed roots plus the station's own certificate."""
        return len(self._store) + (1 if self._identity.current is not None else 0)

    # --- M05 / M03 / M04 -----------------------------------------------------------------------------

    async def _install(self, payload: dict) -> dict:
        use = payload["certificateType"]
        if use not in ROOT_USES:
            outcome = Outcome("Rejected", "UnsupportedParam", f"{use}: ISO 15118 certificates are not supported")
        else:
            before = len(self._store)
            outcome = await self._store.install(use, payload["certificate"], self._clock.now())
            if outcome.status == "Accepted" and len(self._store) != before:
                await self._events.raise_event("ReconfigurationOfSecurityParameters", f"{use} installed")
        if outcome.status != "Accepted":
            log.warning("InstallCertificate %s %s: %s", use, outcome.status, outcome.info)
        return outcome.payload()

    async def _get_ids(self, payload: dict) -> dict:
        uses = tuple(payload.get("certificateType") or ALL_ID_USES)
        found = self._store.entries(uses)
        if not found:
            return {"status": "NotFound"}
        return {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": e.use, "certificateHashData": e.hash_data()} for e in found
            ],
        }

    async def _delete(self, payload: dict) -> dict:
        wanted = payload["certificateHashData"]
        current = self._identity.current
        if current is not None and hashdata.names(wanted, current.leaf):
            log.warning("DeleteCertificate of the station's own certificate refused")
            return Outcome(
                "Failed", "Unspecified", "the ChargingStationCertificate cannot be deleted over OCPP"
            ).payload()
        entry = self._store.find(wanted)
        if entry is None:
            return {"status": "NotFound"}
        outcome = await self._store.delete(entry, self._clock.now())
        if outcome.status == "Accepted":
            await self._events.raise_event("ReconfigurationOfSecurityParameters", f"{entry.use} deleted")
        else:
            log.warning("DeleteCertificate %s: %s", outcome.status, outcome.info)
        return outcome.payload()

    # --- A02 / A03: the station's certificate --------------------------------------------------------

    async def _trigger_sign(self, request: TriggerRequest) -> Reply:
        async def start() -> None:
            self._wanted.set()

        return Reply({"status": "Accepted"}, then=start)

    async def _certificate_signed(self, payload: dict) -> dict | Reply:
        text = payload["certificateChain"]
        use = payload.get("certificateType", STATION_CERTIFICATE)
        if use != STATION_CERTIFICATE:
            return Outcome("Rejected", "UnsupportedParam", f"{use}: ISO 15118 certificates are not supported").payload()
        limit = self._settings.integer(keys.MAX_CERTIFICATE_CHAIN_SIZE)
        if len(text) > limit:
            log.warning("CertificateSigned refused: %d characters, over MaxCertificateChainSize %s", len(text), limit)
            return Outcome("Rejected", "TooLargeElement", f"over MaxCertificateChainSize ({limit})").payload()
        chain, problem = self._identity.check_signed(text, self._store.trusted(CSMS_ROOT), self._clock.now())
        self._answered.set()  # either way this round is over: a CSMS that sent a bad certificate is not asked again
        self._csr = None
        if problem is not None:
            log.warning("CertificateSigned refused: %s", problem)
            await self._events.raise_event("InvalidChargingStationCertificate", problem[:255])
            return Outcome("Rejected", "InvalidCertificate", problem).payload()
        await self._identity.adopt(chain)
        log.info(
            "new ChargingStationCertificate %s, valid until %s",
            chain[0].subject.rfc4514_string(),
            chain[0].not_valid_after_utc.isoformat(),
        )
        await self._events.raise_event("ReconfigurationOfSecurityParameters", "ChargingStationCertificate renewed")
        if self._settings.integer(keys.SECURITY_PROFILE) < 3:
            return {"status": "Accepted"}  # used from the first profile-3 connection on

        async def reconnect() -> None:
            self._link.reconnect("new ChargingStationCertificate")

        return Reply({"status": "Accepted"}, then=reconnect)

    def _renewal_due(self) -> bool:
        """The station certificate has less than 30 days left (A03.FR.01); checked every 12 hours."""
        now = trio.current_time()
        current = self._identity.current
        if current is None or now < self._next_expiry_check:
            return False
        self._next_expiry_check = now + EXPIRY_CHECK_EVERY_S
        left = (current.leaf.not_valid_after_utc - self._clock.now()).total_seconds()
        if left < RENEW_BEFORE_S:
            log.warning("ChargingStationCertificate expires in %.1f days: renewing", left / 86400)
            return True
        return False

    async def _renewal_service(self, link: Link) -> None:
        """Runs while the boot is accepted; a round cut short by a lost link resumes in the next session with
        the same CSR (so a CertificateSigned for it is still taken)."""
        while True:
            if self._renewal_due():
                self._wanted.set()
            with trio.move_on_after(EXPIRY_CHECK_EVERY_S):
                await self._wanted.wait()
            if self._wanted.is_set():
                await self._renewal_round(link)
                self._wanted = trio.Event()

    async def _renewal_round(self, link: Link) -> None:
        if self._csr is None:
            organization = self._settings.text(keys.ORGANIZATION_NAME) or ""
            self._csr = await self._identity.new_csr(self._common_name, organization)
            self._answered = trio.Event()
        repeat = max(0, self._settings.integer(keys.CERT_SIGNING_REPEAT_TIMES))
        wait = max(1.0, self._settings.seconds(keys.CERT_SIGNING_WAIT_MINIMUM))
        for attempt in range(repeat + 1):
            try:
                answer = await link.call("SignCertificate", {"csr": self._csr, "certificateType": STATION_CERTIFICATE})
            except (CallTimeout, CallErrorReply) as exc:
                log.warning("SignCertificate failed (%s); trying again later", exc)
                answer = {}
            if answer.get("status") == "Rejected":
                log.warning("SignCertificate Rejected by the CSMS: %s", answer.get("statusInfo", "no reason"))
                self._csr = None
                return
            with trio.move_on_after(wait * 2**attempt):
                await self._answered.wait()
            if self._answered.is_set():
                return
        log.warning(
            "no CertificateSigned after %d SignCertificate request(s); giving up until the next "
            "trigger or expiry check",
            repeat + 1,
        )
        self._csr = None

    def _priority_needs_certificate(self, value: object) -> str | None:
        """A05.FR.03 (TC_A_21): a slot of security profile 3 is only usable with a valid station certificate."""
        for slot in (s for s in str(value).split(",") if s.strip().isdigit()):
            if self._slot_profile(int(slot)) == 3 and not self._identity.valid(self._clock.now()):
                return f"slot {slot} uses security profile 3 and the station has no valid ChargingStationCertificate"
        return None
