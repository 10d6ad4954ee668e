"""The typed settings (`appliance.devicemodel.settings`): every constant names a catalog variable of the dataType
its class says, checked here once; the reader refuses a value of another type instead of casting it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.devicemodel import DEFAULT_LAYOUTS, format_path
from appliance.devicemodel import settings as keys
from appliance.devicemodel.catalog import build_catalog
from appliance.devicemodel.settings import (
    Flag,
    Integer,
    Key,
    Members,
    Number,
    Seconds,
    SettingError,
    Settings,
    Text,
)
from appliance.devicemodel.types import DataType
from tests.devicemodel.test_support import new_db, open_model

#: The dataTypes each kind of constant may name.
KINDS: dict[type[Key], set[DataType]] = {
    Integer: {DataType.integer},
    Flag: {DataType.boolean},
    Seconds: {DataType.integer, DataType.decimal},
    Number: {DataType.integer, DataType.decimal},
    Members: {DataType.MemberList, DataType.SequenceList},
    Text: {DataType.string},
}


def read(settings: Settings, key: Key) -> object:
    """The accessor of the key's kind."""
    if isinstance(key, Integer):
        return settings.integer(key)
    if isinstance(key, Flag):
        return settings.flag(key)
    if isinstance(key, Seconds):
        return settings.seconds(key)
    if isinstance(key, Number):
        return settings.number(key)
    if isinstance(key, Members):
        return settings.members(key)
    assert isinstance(key, Text)
    return settings.text(key)


ALL_KEYS = [value for value in vars(keys).values() if isinstance(value, Key)] + [
    make(request) for request in keys.DEVICE_DATA_REQUESTS for make in (keys.items_per_message, keys.bytes_per_message)
]
CATALOG = {format_path(d.key).lower(): d for d in build_catalog(DEFAULT_LAYOUTS)}


def test_there_are_constants_of_every_kind() -> None:
    assert {type(key) for key in ALL_KEYS} == set(KINDS)
    assert len(ALL_KEYS) > 40


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda key: key.path)
def test_every_constant_names_a_catalog_variable_of_its_data_type(key: Key) -> None:
    definition = CATALOG.get(key.path.lower())
    assert definition is not None, f"{key.path} is not in the catalog"
    assert format_path(definition.key) == key.path, "spelled as the catalog spells it"
    assert definition.characteristics.data_type in KINDS[type(key)]


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    return new_db(tmp_path / "dm.db")


async def test_every_constant_reads_its_factory_value_with_its_type(db: sqlite3.Connection) -> None:
    dm = await open_model(db)
    expected = {Integer: int, Flag: bool, Seconds: float, Number: float, Members: tuple, Text: (str, type(None))}
    for key in ALL_KEYS:
        value = read(dm.settings, key)
        assert isinstance(value, expected[type(key)]), key.path


@pytest.mark.parametrize(
    ("key", "wrong"),
    [
        (Integer("X.I"), True),  # a bool is an int to Python, not to the device model
        (Integer("X.I"), 1.5),
        (Integer("X.I"), None),
        (Flag("X.F"), 1),
        (Seconds("X.S"), "30"),
        (Seconds("X.S"), False),
        (Number("X.N"), "10"),
        (Members("X.M"), "EVConnected,Authorized"),
        (Members("X.M"), [1, 2]),
        (Text("X.T"), 7),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_path(key: Key, wrong: object) -> None:
    with pytest.raises(SettingError, match=key.path.replace(".", r"\.")):
        read(Settings({key.path: wrong}.__getitem__), key)


def test_the_reader_returns_the_value_typed() -> None:
    s = Settings({"A.I": 3, "A.F": True, "A.S": 30, "A.M": ["EVConnected"], "A.T": None}.__getitem__)
    assert s.integer(Integer("A.I")) == 3
    assert s.flag(Flag("A.F")) is True
    assert s.seconds(Seconds("A.S")) == 30.0
    assert s.members(Members("A.M")) == ("EVConnected",)
    assert s.text(Text("A.T")) is None
