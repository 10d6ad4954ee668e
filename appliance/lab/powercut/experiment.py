"""The power-cut experiment: drive the journal's real write path through the lossy VFS, cut, reboot, judge.

Shared by tests/powercut/test_power_cut.py (CI) and tools/powercut.py (humans, longer runs).

One trial: open a fresh journal through `LossyVFS` with the station's pragmas (the `synchronous` level is the
experiment's variable), apply the real migrations (`appliance.storage.db.migrate`), and run a realistic
stream through the real `JournalStore` — transactions Started → Updated (energy register) → Ended, single
appends and group commits, TxEnded samples, deliveries, failed attempts and drops, and now and then the
station's housekeeping (prune, then `wal_checkpoint(TRUNCATE)`). An operation is *acked* when its
`JournalStore` call returned before the cut. After 1..`max_ops` acked operations the cut is armed a random
0..`CUT_WINDOW` I/O operations ahead, so it lands between two operations or inside the next one(s), i.e.
mid-commit; in `CHECKPOINT_CUTS` of the trials it is aimed inside a housekeeping checkpoint instead. The
operation in flight when it lands is not acked; its effect may be found or not, but never half of it.
The whole trial is deterministic for its seed (message ids are seeded too, see `_seeded_message_ids`).

The next boot gets only the durable image. We judge it on a plain apsw connection (integrity_check,
`appliance.journal.verify.verify`, every acked effect present, nothing that was never written), and reopen a
copy through the production `open_station_db` (stdlib sqlite3): it must open without re-applying migrations.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw

import appliance.journal.store as store_module
from appliance.journal.store import Append, JournalStore, NewTransaction
from appliance.journal.verify import verify
from appliance.lab.powercut.lossyvfs import Disk, LossyVFS, write_image
from appliance.storage.db import DB_NAME, JournalError, migrate, open_station_db
from appliance.timetext import format_iso

MODES = ("full", "normal", "off")
#: The cut lands this many mutating I/O operations (at most) after the last chosen acked operation.
CUT_WINDOW = 40
#: Share of trials whose cut is aimed inside a `wal_checkpoint(TRUNCATE)` rather than at the next few writes:
#: checkpoints are where a broken sync can corrupt a WAL database (howtocorrupt.html), but rare in the stream.
CHECKPOINT_CUTS = 0.2
#: Failed attempts after which the delivery drops a message (MessageAttempts[TransactionEvent]).
MAX_ATTEMPTS = 3
PRUNE_KEEP_ROWS = 8
FAR_FUTURE = "9999-12-31T23:59:59.999Z"


# --- a sqlite3-like face for apsw ------------------------------------------------------------------------------


class Rows:
    """A finished statement as sqlite3's cursor shows it: `fetchone`, `fetchall`, iteration and `rowcount`."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, description: tuple | None = None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.description = description  # column names, for sqlite-utils (which `verify` reads through)

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


class ApswConnection:
    """Just enough of `sqlite3.Connection` (autocommit mode) for JournalStore, `db.migrate` (also undoing newer
    firmware's migrations) and `verify`.

    Statements run to completion at once (rows are fetched eagerly), so no half-stepped statement can keep a
    write open across a COMMIT — the same as sqlite3, which resets statements on the next execute.
    `rowcount` follows sqlite3: the changes of the statement for INSERT/UPDATE/DELETE, -1 for anything else.
    """

    def __init__(self, conn: apsw.Connection) -> None:
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.in_transaction)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Rows:
        readonly: list[bool] = []
        description: list[tuple] = []

        def trace(cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
            readonly.append(bool(cursor.is_readonly))
            description.append(cursor.description)  # prepared, not yet stepped: the columns are known
            return True

        cursor = self.raw.cursor()
        cursor.exec_trace = trace
        rows = list(cursor.execute(sql, params))
        writes = readonly and not readonly[-1]
        return Rows(rows, self.raw.changes() if writes else -1, (description[-1] or None) if description else None)

    def set_authorizer(self, authorizer: Callable[..., int] | None) -> None:
        """sqlite3's name for it; apsw passes the same five arguments and takes the same result codes."""
        self.raw.authorizer = authorizer

    def close(self) -> None:
        self.raw.close()


# --- what was acked -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedRow:
    """An outbox row exactly as the live connection stored it right after the append returned."""

    message_id: str
    action: str
    transaction_id: str | None
    seq_no: int | None
    payload_text: str
    payload: dict


@dataclass
class Op:
    """One JournalStore call and what it must leave behind if it counts (acked, or found after the cut)."""

    index: int
    kind: str  # append | meter | delivered | failure | dropped | prune | checkpoint
    rows: dict[int, ExpectedRow] = field(default_factory=dict)
    started: tuple[str, ...] = ()
    target: int | None = None
    attempts: int = 0
    meter: tuple[int, str, str] | None = None  # (tx_meter_values.id, transaction id, JSON)
    removed_outbox: frozenset[int] = frozenset()
    removed_tx: frozenset[str] = frozenset()
    removed_meter: frozenset[int] = frozenset()

    def describe(self) -> str:
        what = {
            "append": f"append ids {sorted(self.rows)}",
            "meter": f"tx meter value {self.meter and self.meter[0]}",
            "delivered": f"mark_delivered {self.target}",
            "dropped": f"mark_dropped {self.target}",
            "failure": f"record_failure {self.target} -> {self.attempts}",
            "prune": f"prune {len(self.removed_outbox)} rows",
            "checkpoint": "wal_checkpoint",
        }[self.kind]
        return f"#{self.index} {what}"


# --- the workload ----------------------------------------------------------------------------------------------


class Workload:
    """A two-EVSE station's journal traffic, driven through the real JournalStore, recording every effect."""

    def __init__(self, store: JournalStore, db: ApswConnection, rng: random.Random) -> None:
        self.store = store
        self.db = db
        self.rng = rng
        self.clock = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
        self.tx: dict[int, str | None] = {1: None, 2: None}
        self.register_wh = {1: 1_250_000.0, 2: 870_000.0}
        self.online = True
        self.pending: list[int] = []  # outbox ids not yet delivered/dropped, in delivery order
        self.forced: list[str] = []  # follow-ups the station always does next (drop after the last failure, …)
        self._tx_count = 0
        self._last_outbox = 0
        self._last_meter = 0
        self._index = 0

    # time, meter, payloads ------------------------------------------------------------------------------------

    def _tick(self) -> str:
        seconds = self.rng.uniform(1.0, 30.0)
        self.clock += timedelta(seconds=seconds)
        for evse, tx in self.tx.items():
            if tx is not None:
                self.register_wh[evse] += self.rng.uniform(3_500.0, 11_000.0) * seconds / 3600.0
        if self.rng.random() < 0.03:
            self.online = not self.online
        return format_iso(self.clock)

    def _sample(self, evse: int, now: str, context: str) -> dict:
        power = round(self.rng.uniform(3_500.0, 11_000.0), 1) if self.tx[evse] else 0.0
        return {
            "timestamp": now,
            "sampledValue": [
                {
                    "value": round(self.register_wh[evse], 1),
                    "context": context,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {
                    "value": power,
                    "context": context,
                    "measurand": "Power.Active.Import",
                    "unitOfMeasure": {"unit": "W"},
                },
            ],
        }

    def _event(self, on: int, event_type: str, trigger: str, now: str, state: str, **extra: Any) -> dict:
        tx = self.tx[on]
        assert tx is not None
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": now,
            "triggerReason": trigger,
            "seqNo": 0,
            "transactionInfo": {"transactionId": tx, "chargingState": state},
            **extra,
        }
        if not self.online:
            payload["offline"] = True
        return payload

    def _updated(self, evse: int, now: str) -> Append:
        payload = self._event(
            evse,
            "Updated",
            "MeterValuePeriodic",
            now,
            "Charging",
            meterValue=[self._sample(evse, now, "Sample.Periodic")],
        )
        return Append("TransactionEvent", payload)

    # the operations --------------------------------------------------------------------------------------------

    def step(self) -> Op:
        """Run one JournalStore operation (the station's next journal write) and return what it did."""
        kind = self.forced.pop(0) if self.forced else self._choose()
        now = self._tick()
        op = getattr(self, f"_op_{kind}")(now)
        self._index += 1
        return op

    def _choose(self) -> str:
        idle = [e for e, tx in self.tx.items() if tx is None]
        options: list[tuple[str, float]] = [("housekeeping", 0.4)]
        if idle:
            options += [("start", 3.0), ("aligned", 0.7)]
        if len(idle) < len(self.tx):
            options += [("update", 8.0), ("group", 3.0), ("meter", 3.0), ("end", 1.2)]
        if self.pending:
            options += [("deliver", 7.0), ("fail", 1.5)]
        names, weights = zip(*options, strict=True)
        return self.rng.choices(names, weights)[0]

    def _append(self, items: list[Append]) -> Op:
        stored = self.store.append_batch(items)
        rows = self.db.execute(
            "SELECT id, message_id, action, transaction_id, seq_no, payload FROM outbox WHERE id > ? ORDER BY id",
            (self._last_outbox,),
        ).fetchall()
        if len(rows) != len(items):
            raise AssertionError(f"append_batch of {len(items)} left {len(rows)} new outbox rows")
        expected = {}
        for (row_id, message_id, action, tx_id, seq_no, text), payload in zip(rows, stored, strict=True):
            if json.loads(text) != payload:
                raise AssertionError(f"outbox row {row_id} does not hold the payload append_batch returned")
            expected[row_id] = ExpectedRow(message_id, action, tx_id, seq_no, text, payload)
        self._last_outbox = rows[-1][0]
        self.pending.extend(expected)
        started = tuple(i.new_transaction.transaction_id for i in items if i.new_transaction is not None)
        return Op(self._index, "append", rows=expected, started=started)

    def _op_start(self, now: str) -> Op:
        evse = self.rng.choice([e for e, tx in self.tx.items() if tx is None])
        self._tx_count += 1
        tx = f"tx-{self._tx_count:04d}-{self.rng.getrandbits(32):08x}"
        self.tx[evse] = tx
        token = {"idToken": f"04A2{self.rng.getrandbits(24):06X}", "type": "ISO14443"}
        payload = self._event(
            evse,
            "Started",
            "Authorized",
            now,
            "EVConnected",
            evse={"id": evse, "connectorId": 1},
            idToken=token,
            numberOfPhasesUsed=3,
            meterValue=[self._sample(evse, now, "Transaction.Begin")],
        )
        items = [Append("TransactionEvent", payload, new_transaction=NewTransaction(tx, evse, 1, token))]
        others = [e for e, t in self.tx.items() if t is not None and e != evse]
        if others and self.rng.random() < 0.4:  # another EVSE's sample lands in the same group commit
            items.append(self._updated(others[0], now))
        return self._append(items)

    def _op_update(self, now: str) -> Op:
        evse = self.rng.choice([e for e, tx in self.tx.items() if tx is not None])
        return self._append([self._updated(evse, now)])

    def _op_group(self, now: str) -> Op:
        """A group commit: every active EVSE's sample, sometimes a backlog of several, sometimes an idle one's."""
        items = []
        for evse, tx in self.tx.items():
            if tx is None:
                if self.rng.random() < 0.3:
                    items.append(
                        Append("MeterValues", {"evseId": evse, "meterValue": [self._sample(evse, now, "Sample.Clock")]})
                    )
                continue
            for _ in range(self.rng.randint(1, 3)):
                items.append(self._updated(evse, now))
                now = self._tick()
        return self._append(items)

    def _op_aligned(self, now: str) -> Op:
        evse = self.rng.choice([e for e, tx in self.tx.items() if tx is None])
        return self._append(
            [Append("MeterValues", {"evseId": evse, "meterValue": [self._sample(evse, now, "Sample.Clock")]})]
        )

    def _op_end(self, now: str) -> Op:
        evse = self.rng.choice([e for e, tx in self.tx.items() if tx is not None])
        tx = self.tx[evse]
        assert tx is not None
        ended = [*self.store.tx_meter_values(tx), self._sample(evse, now, "Transaction.End")]
        payload = self._event(
            evse, "Ended", self.rng.choice(["StopAuthorized", "EVCommunicationLost"]), now, "Idle", meterValue=ended
        )
        payload["transactionInfo"]["stoppedReason"] = self.rng.choice(["Local", "EVDisconnected"])
        op = self._append([Append("TransactionEvent", payload)])
        self.tx[evse] = None
        return op

    def _op_meter(self, now: str) -> Op:
        evse = self.rng.choice([e for e, tx in self.tx.items() if tx is not None])
        tx = self.tx[evse]
        assert tx is not None
        self.store.add_tx_meter_value(tx, self._sample(evse, now, "Sample.Periodic"))
        row_id, text = self.db.execute(
            "SELECT id, meter_value FROM tx_meter_values WHERE id > ? ORDER BY id", (self._last_meter,)
        ).fetchall()[-1]
        self._last_meter = row_id
        return Op(self._index, "meter", meter=(row_id, tx, text))

    def _op_deliver(self, now: str) -> Op:
        head = self.pending.pop(0)
        self.store.mark_delivered(head)
        return Op(self._index, "delivered", target=head)

    def _op_fail(self, now: str) -> Op:
        head = self.pending[0]
        attempts = self.store.record_failure(head, "CallTimeout: no CALLRESULT within 5 s")
        if attempts >= MAX_ATTEMPTS:
            self.forced.append("drop")
        return Op(self._index, "failure", target=head, attempts=attempts)

    def _op_drop(self, now: str) -> Op:
        head = self.pending.pop(0)
        self.store.mark_dropped(head)
        return Op(self._index, "dropped", target=head)

    def _ids(self) -> tuple[set[int], set[str], set[int]]:
        return (
            {r[0] for r in self.db.execute("SELECT id FROM outbox")},
            {r[0] for r in self.db.execute("SELECT transaction_id FROM transactions")},
            {r[0] for r in self.db.execute("SELECT id FROM tx_meter_values")},
        )

    def _op_housekeeping(self, now: str) -> Op:
        """The station's housekeeping: prune (a tight policy, so it really deletes), then checkpoint next."""
        before = self._ids()
        self.store.prune(keep_rows=PRUNE_KEEP_ROWS, older_than=FAR_FUTURE)
        after = self._ids()
        self.forced.append("checkpoint")
        return Op(
            self._index,
            "prune",
            removed_outbox=frozenset(before[0] - after[0]),
            removed_tx=frozenset(before[1] - after[1]),
            removed_meter=frozenset(before[2] - after[2]),
        )

    def _op_checkpoint(self, now: str) -> Op:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return Op(self._index, "checkpoint")


# --- judging the next boot ------------------------------------------------------------------------------------


@dataclass
class Recovered:
    """The journal's rows as the next boot finds them (empty when the schema itself did not survive)."""

    outbox: dict[int, tuple[str, str, str | None, int | None, str, str | None, int]] = field(default_factory=dict)
    meter: dict[int, tuple[str, str]] = field(default_factory=dict)
    transactions: set[str] = field(default_factory=set)
    migrations: list[tuple[Any, ...]] = field(default_factory=list)
    has_schema: bool = False


def read_recovered(db: ApswConnection) -> Recovered:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    result = Recovered(has_schema={"outbox", "transactions", "tx_meter_values", "schema_migrations"} <= tables)
    if "schema_migrations" in tables:
        result.migrations = db.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    if not result.has_schema:
        return result
    for row_id, *rest in db.execute(
        "SELECT id, message_id, action, transaction_id, seq_no, payload, outcome, attempts FROM outbox"
    ):
        result.outbox[row_id] = tuple(rest)
    meter = db.execute("SELECT id, transaction_id, meter_value FROM tx_meter_values")
    result.meter = {r[0]: (r[1], r[2]) for r in meter}
    result.transactions = {r[0] for r in db.execute("SELECT transaction_id FROM transactions")}
    return result


class Judge:
    """Decides, per operation, whether its effect is in the recovered journal (True/False/None = can't tell)."""

    def __init__(self, ops: list[Op], inflight: Op | None, recovered: Recovered) -> None:
        self.ops = ops
        self.inflight = inflight
        self.r = recovered
        self.problems: list[str] = []
        everything = [*ops, *([inflight] if inflight else [])]
        self.everything = everything
        # Rows a prune (acked or in flight) removed: their earlier history can no longer be checked.
        self.pruned_outbox = frozenset().union(*(op.removed_outbox for op in everything))
        self.pruned_meter = frozenset().union(*(op.removed_meter for op in everything))
        # Which operation created each row a prune may remove: a prune is judged against the creation order.
        self.created: dict[tuple[str, object], int] = {}
        for op in everything:
            self.created.update({("outbox", i): op.index for i in op.rows})
            self.created.update({("transactions", t): op.index for t in op.started})
            if op.meter:
                self.created[("tx_meter_values", op.meter[0])] = op.index

    def visible(self, op: Op) -> bool | None:
        return getattr(self, f"_{op.kind}")(op)

    def _append(self, op: Op) -> bool | None:
        live = [i for i in op.rows if i not in self.pruned_outbox]
        if not live:
            return None
        present = [i for i in live if i in self.r.outbox]
        for row_id in present:
            message_id, action, tx_id, seq_no, text, _, _ = self.r.outbox[row_id]
            want = op.rows[row_id]
            got = (message_id, action, tx_id, seq_no, text)
            if got != (want.message_id, want.action, want.transaction_id, want.seq_no, want.payload_text):
                self.problems.append(f"{op.describe()}: outbox row {row_id} differs: {got!r}")
            elif want.action == "TransactionEvent" and json.loads(text).get("seqNo") != want.payload["seqNo"]:
                self.problems.append(f"{op.describe()}: outbox row {row_id} has another seqNo")
        if present and len(present) < len(live):
            self.problems.append(f"{op.describe()}: batch torn: only ids {present} of {live} survived")
        return len(present) == len(live)

    def _meter(self, op: Op) -> bool | None:
        assert op.meter is not None
        row_id, tx_id, text = op.meter
        if row_id in self.pruned_meter:
            return None
        got = self.r.meter.get(row_id)
        if got is not None and got != (tx_id, text):
            self.problems.append(f"{op.describe()}: tx_meter_values row differs: {got!r}")
        return got is not None

    def _mark(self, op: Op, outcome: str) -> bool | None:
        assert op.target is not None  # every delivered/dropped op names its row
        if op.target in self.pruned_outbox:
            return None
        row = self.r.outbox.get(op.target)
        return row is not None and row[5] == outcome

    def _delivered(self, op: Op) -> bool | None:
        return self._mark(op, "delivered")

    def _dropped(self, op: Op) -> bool | None:
        return self._mark(op, "dropped")

    def _failure(self, op: Op) -> bool | None:
        assert op.target is not None  # every failure op names its row
        if op.target in self.pruned_outbox:
            return None
        row = self.r.outbox.get(op.target)
        return row is not None and row[6] >= op.attempts

    def _prune(self, op: Op) -> bool | None:
        """False if anything it removed is still there; None if all is gone (pruned, or rolled back to before
        the rows were written: the two look the same).

        Torn: a removed row is gone while a row written at the same time or later is still there — a rollback
        to an earlier point cannot explain that, only a half-applied prune (or a torn earlier commit).
        """
        removed: list[tuple[tuple[str, object], bool]]
        removed = [(("outbox", i), i in self.r.outbox) for i in op.removed_outbox]
        removed += [(("transactions", t), t in self.r.transactions) for t in op.removed_tx]
        removed += [(("tx_meter_values", i), i in self.r.meter) for i in op.removed_meter]
        present = [key for key, found in removed if found]
        if not present:
            return None
        newest = max(self.created.get(key, -1) for key in present)
        gone = [key for key, found in removed if not found and self.created.get(key, -1) <= newest]
        if gone:
            self.problems.append(f"{op.describe()}: prune torn: {gone[:3]} gone but {present[:3]} still there")
        return False

    def _checkpoint(self, op: Op) -> bool | None:
        return None

    def phantoms(self) -> None:
        """Nothing may be found that no operation wrote (acked or in flight)."""
        written = {i for op in self.everything for i in op.rows}
        marked = {(op.target, op.kind) for op in self.everything if op.kind in ("delivered", "dropped")}
        attempts: dict[int, int] = {}
        for op in self.everything:
            if op.kind == "failure" and op.target is not None:
                attempts[op.target] = max(attempts.get(op.target, 0), op.attempts)
        for row_id, (*_, outcome, tries) in self.r.outbox.items():
            if row_id not in written:
                self.problems.append(f"phantom outbox row {row_id}")
            if outcome is not None and (row_id, outcome) not in marked:
                self.problems.append(f"outbox row {row_id} is {outcome} but no operation marked it so")
            if tries > attempts.get(row_id, 0):
                self.problems.append(f"outbox row {row_id} has {tries} attempts, more than were recorded")
        meters = {op.meter[0] for op in self.everything if op.meter}
        self.problems += [f"phantom tx_meter_values row {i}" for i in self.r.meter if i not in meters]
        started = {t for op in self.everything for t in op.started}
        self.problems += [f"phantom transaction {t}" for t in self.r.transactions if t not in started]

    def run(self) -> list[Op]:
        """The acked operations whose effect is missing; problems (torn, phantom, not a prefix) go to `problems`."""
        lost: list[Op] = []
        last_visible: Op | None = None
        first_missing: Op | None = None
        for op in self.everything:
            seen = self.visible(op)
            if seen is None:
                continue
            if seen:
                last_visible = op
            else:
                first_missing = first_missing or op
                if op is not self.inflight:
                    lost.append(op)
        if first_missing and last_visible and last_visible.index > first_missing.index:
            self.problems.append(
                f"not a prefix: {last_visible.describe()} survived but {first_missing.describe()} did not"
            )
        self.phantoms()
        return lost


# --- one trial -------------------------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """What one power cut did: the acked work, what of it was lost, and anything corrupt or inconsistent."""

    seed: int
    mode: str
    keep_fraction: float
    acked_ops: int
    acked_commits: int
    acked_messages: int
    lost: list[str]
    corrupt: list[str]
    problems: list[str]
    inflight: str | None
    inflight_kind: str | None
    cut_at_io: int | None
    #: Unsynced write/truncate operations the cut found (what it could drop), over all files.
    unsynced_at_cut: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupt or self.problems)

    def summary(self) -> str:
        state = (
            "ok"
            if self.ok
            else (f"lost {len(self.lost)}" if self.lost else "")
            + (" CORRUPT" if self.corrupt else "")
            + (" INCONSISTENT" if self.problems else "")
        )
        return (
            f"seed {self.seed} {self.mode} keep={self.keep_fraction}: {self.acked_ops} acked ops "
            f"({self.acked_commits} commits, {self.acked_messages} messages), cut at I/O {self.cut_at_io} "
            f"during {self.inflight or '-'}: {state.strip()}"
        )


def open_journal(path: Path, *, vfs: str | None, synchronous: str) -> ApswConnection:
    """An apsw connection set up like `open_station_db` (WAL, the given synchronous level, foreign keys)."""
    raw = apsw.Connection(str(path), vfs=vfs) if vfs else apsw.Connection(str(path))
    db = ApswConnection(raw)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _run_until_cut(
    workdir: Path, disk: Disk, mode: str, rng: random.Random, max_ops: int, store_class: type[JournalStore]
) -> tuple[list[Op], Op]:
    """Write through the lossy VFS until the armed power cut has been taken; return (acked ops, in-flight op)."""
    live = workdir / "live"
    live.mkdir()
    vfs = LossyVFS(disk)
    try:
        db = open_journal(live / DB_NAME, vfs=vfs.name, synchronous=mode)
        try:
            disk.sync_dir()  # open_station_db: fsync_dir(data_dir) right after the file first appears
            migrate(db)  # type: ignore[arg-type]  # the production migration code, duck-typed
            workload = Workload(store_class(db), db, rng)  # type: ignore[arg-type]
            acked = [workload.step() for _ in range(rng.randint(1, max_ops))]
            if rng.random() < CHECKPOINT_CUTS:
                # Aim inside the housekeeping checkpoint (it copies every WAL frame into the database file).
                workload.forced.append("housekeeping")
                acked.append(workload.step())
                # Its I/O: one write per distinct page in the WAL (at most min(frames, pages)), two syncs, a truncate.
                wal = live / f"{DB_NAME}-wal"
                frames = wal.stat().st_size // (4096 + 24) if wal.exists() else 0
                pages = db.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[index]
                disk.arm(rng.randint(0, min(frames, pages) + 3))
            else:
                disk.arm(rng.randint(0, CUT_WINDOW))
            while True:
                op = workload.step()
                if disk.image is not None:  # the cut was taken during this operation: it never returned
                    return acked, op
                acked.append(op)
        finally:
            db.close()
    finally:
        vfs.unregister()


def _check_reopen(copy_dir: Path, recovered: Recovered) -> list[str]:
    """The production open path (stdlib sqlite3) must accept the recovered files without re-migrating."""
    try:
        conn = open_station_db(copy_dir)
    except JournalError as exc:
        return [f"open_station_db refused the recovered journal: {exc}"]
    try:
        problems = []
        if recovered.has_schema:
            after = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
            if after != recovered.migrations:
                problems.append(f"open_station_db changed schema_migrations: {recovered.migrations} -> {after}")
            problems += [f"verify via sqlite3: {v.problem} ({v.transaction_id})" for v in verify(conn)]
        return problems
    finally:
        conn.close()


@contextlib.contextmanager
def _seeded_message_ids(seed: int) -> Iterator[None]:
    """Seeded UUID4 message ids while a trial runs, so the trial is reproducible I/O for I/O.

    The ids are random in production; they are the key of a UNIQUE index, so where they sort decides when index
    pages split, and with it how many writes a commit makes and where a cut at "I/O number N" lands.
    """
    ids = random.Random(f"powercut-ids/{seed}")
    real = store_module.new_message_id
    store_module.new_message_id = lambda: str(uuid.UUID(int=ids.getrandbits(128), version=4))
    try:
        yield
    finally:
        store_module.new_message_id = real


def run_trial(
    seed: int,
    mode: str = "full",
    *,
    keep_fraction: float = 0.0,
    max_ops: int = 400,
    store_class: type[JournalStore] = JournalStore,
) -> TrialResult:
    """One power cut; deterministic for a given (seed, mode, keep_fraction, max_ops).

    `store_class` exists so a test can hand in a deliberately broken store and see the judge catch it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    started = time.monotonic()
    rng = random.Random(f"powercut/{seed}")
    disk = Disk(keep_fraction=keep_fraction, rng=random.Random(f"powercut-disk/{seed}"))
    with tempfile.TemporaryDirectory(prefix="powercut-") as tmp, _seeded_message_ids(seed):
        workdir = Path(tmp)
        acked, inflight = _run_until_cut(workdir, disk, mode, rng, max_ops, store_class)
        assert disk.image is not None
        boot = workdir / "boot"
        write_image(disk.image, boot)
        shutil.copytree(boot, workdir / "copy")

        corrupt: list[str] = []
        problems: list[str] = []
        lost: list[Op] = []
        db = ApswConnection(apsw.Connection(str(boot / DB_NAME)))
        try:
            check = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if check != ["ok"]:
                corrupt += [f"integrity_check: {line}" for line in check[:5]]
            recovered = read_recovered(db)
            if recovered.has_schema:
                problems += [f"verify: {v.problem} ({v.transaction_id} seqNo {v.seq_no})" for v in verify(db)]  # type: ignore[arg-type]
            judge = Judge(acked, inflight, recovered)
            lost = judge.run()
            problems += judge.problems
        except apsw.Error as exc:
            corrupt.append(f"the recovered journal cannot be read: {type(exc).__name__}: {exc}")
            recovered = Recovered()
        finally:
            db.close()
        if not corrupt:
            problems += _check_reopen(workdir / "copy", recovered)

    commits = [op for op in acked if op.kind != "checkpoint"]
    return TrialResult(
        seed=seed,
        mode=mode,
        keep_fraction=keep_fraction,
        acked_ops=len(acked),
        acked_commits=len(commits),
        acked_messages=sum(len(op.rows) for op in acked),
        lost=[op.describe() for op in lost],
        corrupt=corrupt,
        problems=problems,
        inflight=inflight.describe() if inflight else None,
        inflight_kind=inflight.kind if inflight else None,
        cut_at_io=disk.cut_at_io,
        unsynced_at_cut=disk.unsynced_at_cut,
        seconds=time.monotonic() - started,
    )


@dataclass
class Tally:
    """Counts over many trials, for the test's assertions and the tool's report."""

    trials: int = 0
    acked_commits: int = 0
    lost_commits: int = 0
    trials_with_loss: int = 0
    corrupt: int = 0
    inconsistent: int = 0
    #: Trials whose cut found unsynced writes to drop (it landed inside a commit or checkpoint).
    cuts_mid_write: int = 0
    seconds: float = 0.0
    failures: list[TrialResult] = field(default_factory=list)

    def add(self, result: TrialResult) -> None:
        self.trials += 1
        self.acked_commits += result.acked_commits
        self.lost_commits += len(result.lost)
        self.trials_with_loss += bool(result.lost)
        self.corrupt += bool(result.corrupt)
        self.inconsistent += bool(result.problems)
        self.cuts_mid_write += result.unsynced_at_cut > 0
        self.seconds += result.seconds
        if not result.ok:
            self.failures.append(result)

    def line(self) -> str:
        return (
            f"trials {self.trials}, acked commits {self.acked_commits}, lost {self.lost_commits} "
            f"(in {self.trials_with_loss} trials), corrupt {self.corrupt}, inconsistent {self.inconsistent}; "
            f"{self.cuts_mid_write} cuts found unsynced writes; {self.seconds:.1f} s"
        )


def run_trials(
    seeds: range | list[int],
    mode: str,
    *,
    keep_fraction: float = 0.0,
    max_ops: int = 400,
    store_class: type[JournalStore] = JournalStore,
) -> Tally:
    tally = Tally()
    for seed in seeds:
        tally.add(run_trial(seed, mode, keep_fraction=keep_fraction, max_ops=max_ops, store_class=store_class))
    return tally
