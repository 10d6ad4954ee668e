"""Part 6 D, local authorization list management: SendLocalList (TC_D_01…D_06), persistence (TC_D_07) and
GetLocalListVersion (TC_D_08, D_09, D_10).

<Configured versionNumber> is 5 (> 1, as TC_D_06 needs). LocalAuthListCtrlr.Enabled is true (factory value) unless
a case says otherwise. Besides the version the cases check, the list's content is checked through
LocalAuthListCtrlr.Entries (the number of entries, a read-only variable). TC_D_09 ("No list available") has no
Charging Station text in Part 6 edition 3, only a Part 5 row; it is checked as the digest describes it: version 0
while no list has ever been installed.
"""

from __future__ import annotations

from pathlib import Path

from appliance.lab.csms import LoopbackCsms
from tests.conformance.auth_helpers import (
    VALID,
    VALID2,
    auth_station,
    entry,
    install_list,
    list_version,
    restarted_station,
    send_local_list,
)
from tests.conformance.helpers import get_value, set_item, set_variables

VERSION = 5


async def entries(csms: LoopbackCsms) -> int:
    return int(await get_value(csms, "LocalAuthListCtrlr", "Entries") or 0)


async def test_TC_D_01_send_local_list_full(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_01_CS: SendLocalList updateType Full, versionNumber <Configured versionNumber>, one entry with the
    valid idToken. Step 2: status Accepted. Step 4: GetLocalListVersion versionNumber equal to the one sent."""
    async with auth_station(csms, data_dir):
        answer = await send_local_list(csms, VERSION, [entry(VALID)])
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == VERSION
        assert await entries(csms) == 1


async def test_TC_D_02_send_local_list_differential_update(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_02_CS: IdTokenLocalAuthList (the valid idToken, version N); SendLocalList Differential, version N+1,
    adding idToken2 (within ItemsPerMessage and BytesPerMessage). Step 2: Accepted. Step 4: version N+1."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        answer = await send_local_list(csms, VERSION + 1, [entry(VALID2)], "Differential")
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == VERSION + 1
        assert await entries(csms) == 2


async def test_TC_D_03_send_local_list_differential_remove(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_03_CS: IdTokenLocalAuthList; SendLocalList Differential, version N+1, with AuthorizationData without
    idTokenInfo (a removal). Step 2: Accepted. Step 4: version N+1 (and the entry is gone)."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        answer = await send_local_list(csms, VERSION + 1, [entry(VALID, None)], "Differential")
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == VERSION + 1
        assert await entries(csms) == 0


async def test_TC_D_04_send_local_list_full_empty(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_04_CS: IdTokenLocalAuthList; SendLocalList Full, versionNumber <Configured versionNumber>, empty list
    (localAuthorizationList left out: the schema wants at least one item when present). Step 2: Accepted. Step 4:
    version <Configured versionNumber>; the list is empty."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        answer = await send_local_list(csms, VERSION, None)
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == VERSION
        assert await entries(csms) == 0


async def test_TC_D_05_send_local_list_differential_empty(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_05_CS: IdTokenLocalAuthList; SendLocalList Differential, version N+1, empty list. Step 2: Accepted.
    Step 4: version N+1; the entries are unchanged."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        answer = await send_local_list(csms, VERSION + 1, None, "Differential")
        assert answer["status"] == "Accepted", answer
        assert await list_version(csms) == VERSION + 1
        assert await entries(csms) == 1


async def test_TC_D_06_send_local_list_version_mismatch(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_06_CS: IdTokenLocalAuthList at <Configured versionNumber> (> 1); SendLocalList Differential with version
    N-1 and a non-empty list. Step 2: status VersionMismatch. Step 4: version still N (and nothing applied)."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        answer = await send_local_list(csms, VERSION - 1, [entry(VALID2)], "Differential")
        assert answer["status"] == "VersionMismatch", answer
        assert await list_version(csms) == VERSION
        assert await entries(csms) == 1


async def test_TC_D_07_local_list_persistent_over_reboot(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_07_CS: IdTokenLocalAuthList at <Configured versionNumber>; the station reboots (Booted).
    Step 2: GetLocalListVersion versionNumber <Configured versionNumber> (and the entries are still there)."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID), entry(VALID2))
    async with restarted_station(csms, data_dir):
        assert await list_version(csms) == VERSION
        assert await entries(csms) == 2


async def test_TC_D_08_get_local_list_version(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_08_CS: IdTokenLocalAuthList at <Configured versionNumber>. Step 2: GetLocalListVersionResponse
    versionNumber <Configured versionNumber>."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        assert await list_version(csms) == VERSION


async def test_TC_D_09_get_local_list_version_no_list(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_09 (Part 5 "No list available"): a station that never received a local list answers
    GetLocalListVersion with versionNumber 0."""
    async with auth_station(csms, data_dir):
        assert await list_version(csms) == 0


async def test_TC_D_10_get_local_list_version_disabled(csms: LoopbackCsms, data_dir: Path) -> None:
    """TC_D_10_CS: LocalAuthListEnabled false (set by the CSMS, with a list installed before, so the answer cannot
    come from an empty list). Step 2: GetLocalListVersionResponse versionNumber 0."""
    async with auth_station(csms, data_dir):
        await install_list(csms, VERSION, entry(VALID))
        [result] = await set_variables(csms, set_item("LocalAuthListCtrlr", "Enabled", "false"))
        assert result["attributeStatus"] == "Accepted", result
        assert await list_version(csms) == 0
