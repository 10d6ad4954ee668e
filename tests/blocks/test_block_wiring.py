"""The Block protocol as the station uses it: every block wired in one loop, nothing left unowned.

Built on a real station (opened on a real data directory, not run), so the list checked is the list that runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.blocks.base import Block
from appliance.hardware.registry import make_hardware
from appliance.lab.csms import LoopbackCsms
from appliance.protocol import default_registry
from appliance.station import CORE_MIGRATIONS, Station
from appliance.storage.db import migration_files
from tests.harness import make_config

#: CSMS → station requests of OCPP 2.0.1 Core that this station answers (everything else: NotSupported).
HANDLED = {
    "ChangeAvailability",
    "ClearCache",
    "CustomerInformation",
    "DataTransfer",
    "GetBaseReport",
    "GetLocalListVersion",
    "GetLog",
    "GetReport",
    "GetTransactionStatus",
    "GetVariables",
    "RequestStartTransaction",
    "RequestStopTransaction",
    "Reset",
    "SendLocalList",
    "SetNetworkProfile",
    "SetVariables",
    "TriggerMessage",
    "UnlockConnector",
    # certificates block (issue 10)
    "InstallCertificate",
    "GetInstalledCertificateIds",
    "DeleteCertificate",
    "CertificateSigned",
    "UpdateFirmware",  # firmware update block
    # smart charging block
    "SetChargingProfile",
    "GetChargingProfiles",
    "ClearChargingProfile",
    "GetCompositeSchedule",
}


@pytest.fixture
async def blocks(tmp_path: Path) -> AsyncIterator[list[Block]]:
    with LoopbackCsms() as csms:
        config = make_config(tmp_path, csms)
        station = Station(config, make_hardware(config))
        await station.open()
        try:
            yield station._build_blocks()
        finally:
            station.storage.close()


async def test_every_migration_has_one_owner(blocks: list[Block]) -> None:
    owners: dict[str, list[str]] = {name: ["core"] for name in CORE_MIGRATIONS}
    for block in blocks:
        for name in block.migrations:
            owners.setdefault(name, []).append(type(block).__name__)
    files = {name for _, name, _ in migration_files()}
    assert set(owners) == files, f"owned but missing: {set(owners) - files}; unowned: {files - set(owners)}"
    assert all(len(who) == 1 for who in owners.values()), owners


async def test_each_action_and_trigger_has_exactly_one_block(blocks: list[Block]) -> None:
    actions: dict[str, str] = {}
    triggers: dict[str, str] = {}
    for block in blocks:
        for action in block.handlers():
            assert action not in actions, f"{action}: {actions[action]} and {type(block).__name__}"
            actions[action] = type(block).__name__
        for message in block.triggers():
            assert message not in triggers, f"TriggerMessage({message}): two owners"
            triggers[message] = type(block).__name__
    assert set(actions) == HANDLED
    assert set(actions) <= set(default_registry().actions)
    # The messages the station produces; the others TriggerMessage may name (V2G and combined certificate
    # signing, published firmware) are NotImplemented until their blocks exist.
    assert set(triggers) == {
        "BootNotification",
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "TransactionEvent",
        "FirmwareStatusNotification",
        "LogStatusNotification",
        "SignChargingStationCertificate",
    }
