"""The contact ledger: every task and message a run issued, in one SQLite file.

Why it exists: a batch run is repeated every day over growing exports. Without a memory of what was
already issued, the same greeting would go out on every run and frequency caps could only see one
run. The ledger is that memory. Guards (``engine.guards``) read it before writing a run; the run
records what it kept after its run folder is in place.

What is stored (and what is not): one row per issued item with its idempotency key
(``<rule_id>|<customer_id>|<period label>``), kind (task or message), customer id, rule, stage,
channel, category, template, assignee, priority, send time or due time, the run id and the run's
as-of instant. Customer names, addresses and message bodies are NOT stored: the ledger only needs
ids to do its job, and keeping personal data out of it keeps it safe to share with auditors.

Times: every instant is a naive local wall-clock time (the zone of the guards policy, e.g.
Asia/Shanghai), stored as ``YYYY-MM-DDTHH:MM:SS`` text, so text order is time order. ``issued_at``
is the run's as-of instant, not the wall clock, so the ledger contents depend only on the runs.

Which runs count ("history"): runs are numbered in the order they were first recorded. A run sees
the rows of the runs recorded *before* it — for a new run, every run in the ledger. Its own rows,
and rows of runs recorded after it, do not count when exactly that run (the same run id: the same
inputs, policies, templates and as-of) is executed again, by ``run --force`` or ``verify``; so
re-executing a run reproduces identical output, and ``record`` replaces its rows (it keeps its place
in the order). Nothing is issued twice this way: later runs were guarded against this run's rows.
A *new* run sees every recorded run, whatever their as-of dates, even if it re-runs an older day.

Withdrawn runs (``withdraw``): a run whose tasks and messages were never acted on (they went to the
wrong people, a column was mapped wrong) is taken back: its rows move to ``withdrawn_issued`` and no
longer hold anything back, so the corrected batch issues them. They stay readable (``entries``,
``crm-engine ledger``, ``verify``), and a run recorded before the withdrawal still sees them when it
is executed again (``withdrawn_seq``: the last run recorded when it was withdrawn), so it reproduces.
``run --force`` on the withdrawn run itself issues its items again (and ends the withdrawal).

Recalled messages (``recalls``): a message issued ahead (a birthday greeting for next week) whose
customer has since opted out, withdrawn consent or lost the address is recalled by a later run
(``engine.guards.find_recalls``). The recall is a row of its own (the message's row stays, with its
key: the period's greeting is not issued again); from the recalling run on, the message no longer
counts for the caps and the min-gap guard (it is not sent) and is not pending any more. A recall
counts like the recalling run's other rows: not once that run is withdrawn, and for a re-executed
run only if recorded before it.

One run at a time: ``one_run_at_a_time`` lets a run check the guards against the ledger and record
its rows only when no other run on the same ledger is between those two steps (a second run waits,
and then sees the first one's rows: nothing is issued twice, and no run fails on a duplicate).

Crash safety: a run's rows are written in one transaction (``stage``, or ``record`` = stage + commit).
A batch run stages them while it writes its files and commits only after its run folder has been
renamed into place, so a failed or killed run leaves the ledger unchanged; see ``has_run`` for the
(narrow) case of a folder without ledger rows.
"""
from __future__ import annotations

import csv
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

try:
    import fcntl
except ImportError:  # not on a POSIX system
    fcntl = None

from engine.decisions import CATEGORY_LABELS, Message, Task
from engine.errors import EngineError, Location, Problem
from engine.outputs import STAGE_LABELS
from engine.xlsx_out import Column, Sheet, escape_text, write_workbook

SCHEMA_VERSION = 3
DEFAULT_LEDGER_NAME = "ledger.sqlite"

_WITHDRAWN_SCHEMA = """
CREATE TABLE IF NOT EXISTS withdrawn_issued (
    key TEXT NOT NULL, kind TEXT NOT NULL, customer_id TEXT NOT NULL, rule_id TEXT NOT NULL, stage TEXT,
    channel TEXT, category TEXT, template TEXT, assignee TEXT, priority TEXT, send_at TEXT, due TEXT,
    run_id TEXT NOT NULL REFERENCES runs(run_id), issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS withdrawn_by_run ON withdrawn_issued (run_id);
CREATE VIEW IF NOT EXISTS all_issued AS SELECT * FROM issued UNION ALL SELECT * FROM withdrawn_issued;
"""

# Messages an earlier run issued ahead and a later run recalled (``pending_messages``, ``find_recalls``).
# ``run_id`` is the recalling run, so the history conditions on runs apply to recalls as to issued rows.
_RECALLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS recalls (
    key         TEXT NOT NULL,       -- the recalled message's idempotency key (issued.key, kind message)
    issued_by   TEXT NOT NULL,       -- the run that issued it
    run_id      TEXT NOT NULL REFERENCES runs(run_id),  -- the run that recalled it
    recalled_at TEXT NOT NULL,       -- that run's as-of instant
    guard       TEXT NOT NULL,       -- the guard that would now hold it back (no-contact, opt-out, consent)
    reason      TEXT NOT NULL,       -- why, in Chinese (ids only, no personal data)
    PRIMARY KEY (key, run_id)
);
CREATE INDEX IF NOT EXISTS recalls_by_run ON recalls (run_id);
"""

# For the min-gap guard (``latest_issues``): the latest issue of a rule to a customer is one seek.
# Not a schema change (an older crm-engine reads the file as before): a ledger made before it gets it
# when a run first asks (``latest_issues``), which takes a moment once on a large ledger.
_BY_RULE_INDEX = "CREATE INDEX IF NOT EXISTS issued_by_rule ON issued (rule_id, customer_id, kind, issued_at)"
# For recalls (``pending_messages``): the messages still to be sent are a few days' worth, found by send time.
_BY_SEND_AT_INDEX = "CREATE INDEX IF NOT EXISTS issued_by_send_at ON issued (send_at) WHERE kind = 'message'"

# Migrations: version N → SQL that upgrades a version N-1 ledger. Version 1 is the initial schema;
# version 2 can withdraw runs; version 3 records recalled messages.
MIGRATIONS: dict[int, str] = {
    3: _RECALLS_SCHEMA,
    2: """
ALTER TABLE runs ADD COLUMN withdrawn_at TEXT;
ALTER TABLE runs ADD COLUMN withdrawn_seq INTEGER;
ALTER TABLE runs ADD COLUMN withdrawn_reason TEXT;
""" + _WITHDRAWN_SCHEMA,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL UNIQUE, -- the order runs were first recorded in
    as_of    TEXT NOT NULL,          -- the run's as-of instant
    tasks    INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    withdrawn_at     TEXT,           -- when it was withdrawn (the wall clock, local), NULL: it stands
    withdrawn_seq    INTEGER,        -- the last run recorded at that moment (runs up to it saw its rows)
    withdrawn_reason TEXT
);
CREATE TABLE IF NOT EXISTS issued (
    key         TEXT NOT NULL,       -- idempotency key: rule|customer|period
    kind        TEXT NOT NULL CHECK (kind IN ('task', 'message')),
    customer_id TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    stage       TEXT,
    channel     TEXT,
    category    TEXT,
    template    TEXT,
    assignee    TEXT,
    priority    TEXT,
    send_at     TEXT,                -- messages: when it is to be sent
    due         TEXT,                -- tasks: when it is due
    run_id      TEXT NOT NULL REFERENCES runs(run_id),
    issued_at   TEXT NOT NULL,       -- the run's as-of instant (not the wall clock)
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS issued_by_customer ON issued (customer_id, kind, send_at);
CREATE INDEX IF NOT EXISTS issued_by_run ON issued (run_id);
""" + _WITHDRAWN_SCHEMA + ";" + _RECALLS_SCHEMA + ";" + _BY_RULE_INDEX + ";" + _BY_SEND_AT_INDEX

# Columns of an entry, in table order.
FIELDS = ("key", "kind", "customer_id", "rule_id", "stage", "channel", "category", "template", "assignee",
          "priority", "send_at", "due", "run_id", "issued_at")
_TIME_FIELDS = ("send_at", "due", "issued_at")


class LedgerError(EngineError):
    """The ledger file cannot be used (missing, made by a newer version, not a ledger)."""


@dataclass(frozen=True)
class Entry:
    """One issued task or message, as recorded."""

    key: str
    kind: str  # "task" | "message"
    customer_id: str
    rule_id: str
    stage: str | None
    channel: str | None
    category: str | None
    template: str | None
    assignee: str | None
    priority: str | None
    send_at: datetime | None
    due: datetime | None
    run_id: str
    issued_at: datetime
    withdrawn_at: datetime | None = None  # its run was withdrawn then (``Ledger.withdraw``)
    recalled_by: str | None = None  # the run that recalled this message (``Ledger.stage`` recalls)

    @property
    def as_of(self) -> date:
        return self.issued_at.date()


def to_text(moment: datetime | None) -> str | None:
    """An instant as stored: naive local ISO text, seconds precision."""
    if moment is None:
        return None
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        # Mixing aware and naive texts would break text ordering; the guards convert to local first.
        raise ValueError(f"ledger times must be naive local times, got {moment.isoformat()}")
    return moment.replace(microsecond=0).isoformat(timespec="seconds")


def _from_text(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _entry(row: sqlite3.Row | tuple) -> Entry:
    values = dict(zip((*FIELDS, "withdrawn_at", "recalled_by"), row))
    for name in (*_TIME_FIELDS, "withdrawn_at"):
        if name in values:
            values[name] = _from_text(values[name])
    return Entry(**values)


def _since_text(since: date | datetime | None) -> str | None:
    """A filter bound: a date means the start of that day."""
    if since is None:
        return None
    if not isinstance(since, datetime):
        since = datetime.combine(since, time(0, 0))
    return to_text(since)


class Ledger:
    """An open ledger file. Use as a context manager, or call ``close()``.

    ``create=False`` opens only an existing ledger (for the ``ledger`` command: showing a ledger
    should not create an empty file at a mistyped path).
    """

    def __init__(self, path: Path | str, create: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise LedgerError(Problem(
                    code="no-ledger",
                    message=f"联系台账不存在 / no contact ledger at {self.path}",
                    location=Location(file=str(self.path)),
                    fix="先运行一次 crm-engine run，或用 --ledger 指定台账文件 / run once first, or pass --ledger PATH",
                ))
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a run's rows are one transaction.
        # timeout: a second process recording at the same moment waits instead of failing at once.
        # check_same_thread=False: a run stages its rows on a thread while it writes its files
        # (``stage``); the connection is never used by two threads at once.
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0, check_same_thread=False)
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    def _prepare(self) -> None:
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            # A larger page cache (64 MiB, the default is 2 MiB): a run inserts and looks up
            # 100,000s of keys in random order, and index pages evicted mid-run must be read again.
            self.conn.execute("PRAGMA cache_size = -65536")
        except sqlite3.DatabaseError as exc:
            raise self._not_a_ledger(str(exc)) from None
        if not tables:
            self.conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            self.conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            self.conn.execute("COMMIT")
            return
        if "schema_version" not in tables or "issued" not in tables:
            raise self._not_a_ledger("its tables are not a contact ledger's")
        row = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise LedgerError(Problem(
                code="ledger-too-new",
                message=f"联系台账由更新版本的工具创建（台账版本 {version}，本工具支持 {SCHEMA_VERSION}）"
                        f" / the ledger was made by a newer version (schema {version}, this tool knows {SCHEMA_VERSION})",
                location=Location(file=str(self.path)),
                fix="升级 crm-engine / upgrade crm-engine",
            ))
        if version < SCHEMA_VERSION:
            self.conn.execute("BEGIN IMMEDIATE")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(target, "").split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
            self.conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            self.conn.execute("COMMIT")

    def _not_a_ledger(self, detail: str) -> LedgerError:
        return LedgerError(Problem(
            code="not-a-ledger",
            message=f"这个文件不是联系台账 / this file is not a contact ledger ({detail})",
            location=Location(file=str(self.path)),
            fix="检查 --ledger 路径或 guards.yaml 中的 ledger.path / check --ledger or ledger.path in guards.yaml",
        ))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- queries used by the guards ----------------------------------------------------------------
    def _history(self, for_run: str | None, alias: str = "issued") -> tuple[str, str, list[Any]]:
        """The table, SQL condition and parameters for the rows run ``for_run`` sees: those of runs
        recorded before it if it is in the ledger already (a re-execution), else all rows; withdrawn
        runs' rows only for a run recorded before the withdrawal. ``for_run`` None: a new run."""
        condition, params, state = self._runs_seen(for_run, f"{alias}.run_id")
        if state == "new":
            return f"issued AS {alias}", "1", []  # withdrawn rows are not in the issued table
        if state == "withdrawn":  # a withdrawn run issued again: withdrawn rows may count too
            return f"all_issued AS {alias}", condition, params
        # Without withdrawn runs, the issued table alone (its index serves the join; a UNION view's does not).
        any_withdrawn = self.conn.execute("SELECT 1 FROM runs WHERE withdrawn_at IS NOT NULL LIMIT 1").fetchone()
        return f"{'all_issued' if any_withdrawn else 'issued'} AS {alias}", condition, params

    def _runs_seen(self, for_run: str | None, column: str) -> tuple[str, list[Any], str]:
        """The SQL condition (and parameters) on a run id ``column`` for the runs whose rows run
        ``for_run`` sees, and what ``for_run`` is: "new", "recorded" or "withdrawn". A new run sees every
        run not withdrawn; a re-executed one the runs recorded before it (withdrawn ones if withdrawn after it)."""
        row = None if for_run is None else self.conn.execute(
            "SELECT seq, withdrawn_at FROM runs WHERE run_id = ?", (for_run,)).fetchone()
        if row is None:
            return f"{column} IN (SELECT run_id FROM runs WHERE withdrawn_at IS NULL)", [], "new"
        seq, withdrawn_at = row
        if withdrawn_at is not None:
            # Issued again (run --force): later runs were not guarded against it, so it is guarded
            # against them; runs before it are seen as it saw them.
            return (f"{column} IN (SELECT run_id FROM runs WHERE run_id != ? AND "
                    "(withdrawn_at IS NULL OR (seq < ? AND withdrawn_seq >= ?)))", [for_run, seq, seq], "withdrawn")
        return (f"{column} IN (SELECT run_id FROM runs WHERE seq < ? AND (withdrawn_at IS NULL OR withdrawn_seq >= ?))",
                [seq, seq], "recorded")

    def _sees_no_runs(self, for_run: str | None) -> bool:
        """Whether run ``for_run`` sees no recorded run at all (a first run on a new ledger): then no row
        can match, and the bulk lookups below need not fill their temporary tables (at 100,000
        customers ~1 s for 100,000s of keys)."""
        seen, params, _ = self._runs_seen(for_run, "run_id")
        return self.conn.execute(f"SELECT 1 FROM runs WHERE {seen} LIMIT 1", params).fetchone() is None

    def _not_recalled(self, for_run: str | None, alias: str) -> tuple[str, list[Any]]:
        """An SQL condition (and parameters) true for the rows of ``alias`` that are no message a run
        seen by ``for_run`` recalled: a recalled message is not sent, so caps and gaps do not count it."""
        if self.conn.execute("SELECT 1 FROM recalls LIMIT 1").fetchone() is None:
            return "1", []  # the usual case: nothing to look up per row
        seen, params, _ = self._runs_seen(for_run, "rc.run_id")
        return (f"({alias}.kind != 'message' OR NOT EXISTS (SELECT 1 FROM recalls AS rc WHERE rc.key = {alias}.key AND {seen}))",
                params)

    def was_issued(self, key: str, kind: str | None = None, for_run: str | None = None) -> Entry | None:
        """The entry for ``key`` (of ``kind``, if given), as run ``for_run`` sees the ledger
        (None: any run)."""
        table, history, params = self._history(for_run)
        sql = f"SELECT {', '.join(FIELDS)} FROM {table} WHERE key = ? AND {history}"
        params = [key, *params]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        row = self.conn.execute(sql + " ORDER BY issued_at, run_id LIMIT 1", params).fetchone()
        return _entry(row) if row else None

    def issued_among(self, keys: Iterable[tuple[str, str]], for_run: str | None = None) -> dict[tuple[str, str], tuple[str, datetime]]:
        """Bulk ``was_issued`` for the dedupe guard: (kind, key) → (run id, issued at) for those
        of ``keys`` issued in the history run ``for_run`` sees.

        The wanted keys go into a temporary table joined with the ledger: a run over 100,000
        customers asks for hundreds of thousands of keys, and one query per key is many times
        slower. Only the two columns the guard's reason needs are read, for the same reason.
        """
        found: dict[tuple[str, str], tuple[str, datetime]] = {}
        if self._sees_no_runs(for_run):
            return found
        parsed: dict[str, datetime] = {}  # a run has one issued_at: parse each text once
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (kind TEXT, key TEXT, PRIMARY KEY (kind, key)) WITHOUT ROWID")
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("DELETE FROM temp.wanted")
            self.conn.executemany("INSERT OR IGNORE INTO temp.wanted (kind, key) VALUES (?, ?)", keys)
            table, history, params = self._history(for_run, "i")
            sql = ("SELECT i.kind, i.key, i.run_id, i.issued_at FROM temp.wanted AS w "
                   f"JOIN {table} ON i.kind = w.kind AND i.key = w.key WHERE {history}")
            for kind, key, run_id, issued_at in self.conn.execute(sql, params):
                moment = parsed.get(issued_at)
                if moment is None:
                    moment = parsed[issued_at] = datetime.fromisoformat(issued_at)
                found[(kind, key)] = (run_id, moment)
            self.conn.execute("DELETE FROM temp.wanted")
        finally:
            self.conn.execute("COMMIT")
        return found

    def latest_issues(self, wanted: Iterable[tuple[str, str, str]], since: date, until: date,
                      for_run: str | None = None) -> dict[tuple[str, str, str], date]:
        """For the min-gap guard: for each wanted (kind, customer id, rule id), the latest as-of date
        from ``since`` to ``until`` (both included) on which a run issued that rule's task or message
        to that customer, in the history run ``for_run`` sees; pairs with none are left out.

        As ``issued_among``: the wanted triples go into a temporary table joined with the ledger by
        the ``issued_by_rule`` index, one query for the whole run, not one per item.
        """
        found: dict[tuple[str, str, str], date] = {}
        if self._sees_no_runs(for_run):
            return found
        parsed: dict[str, date] = {}  # a run has one issued_at: parse each text once
        after = date.fromordinal(until.toordinal() + 1)  # rows before the start of the day after ``until``
        with self._wanted("INSERT OR IGNORE INTO temp.gap_wanted (kind, customer_id, rule_id) VALUES (?, ?, ?)", wanted):
            table, history, params = self._history(for_run, "i")
            sent, sent_params = self._not_recalled(for_run, "i")
            sql = (f"SELECT w.kind, w.customer_id, w.rule_id, MAX(i.issued_at) FROM temp.gap_wanted AS w JOIN {table} "
                   "ON i.rule_id = w.rule_id AND i.customer_id = w.customer_id AND i.kind = w.kind "
                   f"WHERE i.issued_at >= ? AND i.issued_at < ? AND {history} AND {sent} GROUP BY w.rule_id, w.customer_id, w.kind")
            for kind, customer_id, rule_id, issued_at in self.conn.execute(
                    sql, [since.isoformat(), after.isoformat(), *params, *sent_params]):
                day = parsed.get(issued_at)
                if day is None:
                    day = parsed[issued_at] = date.fromisoformat(issued_at[:10])
                found[(kind, customer_id, rule_id)] = day
        return found

    def task_history(self, pairs: Iterable[tuple[str, str]], before: datetime, for_run: str | None = None,
                     formerly: Mapping[str, tuple[str, ...]] | None = None) -> dict[tuple[str, str], tuple[date, int]]:
        """For the task sheets' 上次派发 and 第几次: for each wanted (rule id, customer id), the as-of
        date of the latest task of that rule issued to that customer before ``before`` and how many
        there were, in the history run ``for_run`` sees; pairs never given a task are left out.
        ``formerly``: rule id → its former ids (formerly:), whose tasks count as the rule's.

        One query for the whole run, as ``latest_issues`` (same temporary table and index)."""
        found: dict[tuple[str, str], tuple[date, int]] = {}
        if self._sees_no_runs(for_run):
            return found
        parsed: dict[str, date] = {}  # a run has one issued_at: parse each text once
        pairs = list(pairs)
        formerly = formerly or {}
        asked = pairs + [(old, customer_id) for rule_id, customer_id in pairs for old in formerly.get(rule_id, ())]
        with self._wanted("INSERT OR IGNORE INTO temp.gap_wanted (kind, rule_id, customer_id) VALUES ('task', ?, ?)", asked):
            table, history, params = self._history(for_run, "i")
            sql = (f"SELECT w.rule_id, w.customer_id, MAX(i.issued_at), COUNT(*) FROM temp.gap_wanted AS w JOIN {table} "
                   "ON i.rule_id = w.rule_id AND i.customer_id = w.customer_id AND i.kind = w.kind "
                   f"WHERE i.issued_at < ? AND {history} GROUP BY w.rule_id, w.customer_id")
            for rule_id, customer_id, issued_at, count in self.conn.execute(sql, [to_text(before), *params]):
                day = parsed.get(issued_at)
                if day is None:
                    day = parsed[issued_at] = date.fromisoformat(issued_at[:10])
                found[(rule_id, customer_id)] = (day, count)
        for rule_id, customer_id in pairs if formerly else ():  # a former id's tasks are this rule's
            under = [found.pop((old, customer_id), None) for old in formerly.get(rule_id, ())]
            under = [h for h in [found.get((rule_id, customer_id)), *under] if h is not None]
            if under:
                found[(rule_id, customer_id)] = (max(day for day, _ in under), sum(count for _, count in under))
        return found

    def rule_ids(self) -> list[str]:
        """Every rule id with rows in the ledger (withdrawn runs' too), in order: one seek of the
        ``issued_by_rule`` index per id, not a scan of every row."""
        self.conn.execute(_BY_RULE_INDEX)
        found = {rule_id for (rule_id,) in self.conn.execute("SELECT DISTINCT rule_id FROM withdrawn_issued")}
        last = ""
        while (rule_id := self.conn.execute("SELECT MIN(rule_id) FROM issued WHERE rule_id > ?", (last,)).fetchone()[0]) is not None:
            found.add(rule_id)
            last = rule_id
        return sorted(found)

    def rule_issues_since(self, rule_id: str, since: date,
                          for_run: str | None = None) -> list[tuple[str, str | None, str | None, int]]:
        """(kind, stage, template, how many) of the rows of ``rule_id`` issued on or after ``since``,
        in the history run ``for_run`` sees (engine.former_rules: rules gone from the policies)."""
        table, history, params = self._history(for_run, "i")
        sql = (f"SELECT i.kind, i.stage, i.template, COUNT(*) FROM {table} WHERE i.rule_id = ? AND i.issued_at >= ? "
               f"AND {history} GROUP BY i.kind, i.stage, i.template ORDER BY i.kind, i.stage, i.template")
        return [tuple(row) for row in self.conn.execute(sql, [rule_id, since.isoformat(), *params])]

    def task_origins(self, wanted: Iterable[tuple[str, str, str]], until: date,
                     for_run: str | None = None) -> dict[tuple[str, str, str], tuple[date, str, datetime | None, str | None, datetime]]:
        """For the task sheets' 仍待处理 page (``engine.guards.StillOpen``): for each wanted (rule id,
        customer id, key), the earlier task still open: the ledger row of that key, or for an empty key
        the latest task of that rule to that customer issued on or before ``until``; as (as-of date,
        run id, due, assignee, issued at: that run's as-of instant), in the history run ``for_run`` sees.
        Rows not found are left out.

        One query for the whole run, as ``task_history`` (a temporary table, the ``issued_by_rule`` index)."""
        found: dict[tuple[str, str, str], tuple[date, str, datetime | None, str | None, datetime]] = {}
        after = date.fromordinal(until.toordinal() + 1)
        with self._wanted("INSERT OR IGNORE INTO temp.origin_wanted (rule_id, customer_id, key) VALUES (?, ?, ?)", wanted,
                          "origin_wanted (rule_id TEXT, customer_id TEXT, key TEXT, PRIMARY KEY (rule_id, customer_id, key))"):
            table, history, params = self._history(for_run, "i")
            # SQLite takes the bare columns (run, due, assignee) from the row of the MAX: the latest one.
            sql = (f"SELECT w.rule_id, w.customer_id, w.key, MAX(i.issued_at), i.run_id, i.due, i.assignee "
                   f"FROM temp.origin_wanted AS w JOIN {table} "
                   "ON i.rule_id = w.rule_id AND i.customer_id = w.customer_id AND i.kind = 'task' "
                   f"WHERE (i.key = w.key OR (w.key = '' AND i.issued_at < ?)) AND {history} "
                   "GROUP BY w.rule_id, w.customer_id, w.key")
            for rule_id, customer_id, key, issued_at, run_id, due, assignee in self.conn.execute(sql, [after.isoformat(), *params]):
                found[(rule_id, customer_id, key)] = (date.fromisoformat(issued_at[:10]), run_id, _from_text(due), assignee,
                                                      datetime.fromisoformat(issued_at))
        return found

    @contextmanager
    def _wanted(self, insert_sql: str, rows: Iterable[tuple], table: str = "gap_wanted (rule_id TEXT, customer_id TEXT, "
                "kind TEXT, PRIMARY KEY (rule_id, customer_id, kind))") -> Iterator[None]:
        """``rows`` in a temporary table (``table``: its name and columns; by default ``gap_wanted``: rule
        id, customer id, kind) for one bulk join with the ledger by the ``issued_by_rule`` index, inside
        one transaction; emptied afterwards."""
        name = table.split(" ", 1)[0]
        self.conn.execute(_BY_RULE_INDEX)  # a ledger made before the index gets it (once)
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} WITHOUT ROWID")
        self.conn.execute("BEGIN")
        try:
            self.conn.execute(f"DELETE FROM temp.{name}")
            self.conn.executemany(insert_sql, rows)
            yield
            self.conn.execute(f"DELETE FROM temp.{name}")
        finally:
            self.conn.execute("COMMIT")

    def count_messages(self, customer_id: str, category: str | Iterable[str], since: datetime,
                       until: datetime | None = None, for_run: str | None = None) -> int:
        """Messages of ``category`` (one or several) for a customer whose send time is after
        ``since`` (exclusive) and, if given, before ``until`` (exclusive), in the history run
        ``for_run`` sees."""
        categories = [category] if isinstance(category, str) else sorted(set(category))
        if not categories:
            return 0
        table, history, history_params = self._history(for_run)
        sent, sent_params = self._not_recalled(for_run, "issued")
        sql = (f"SELECT COUNT(*) FROM {table} WHERE kind = 'message' AND customer_id = ? "
               f"AND category IN ({', '.join('?' for _ in categories)}) AND COALESCE(send_at, issued_at) > ? AND {history} AND {sent}")
        params: list[Any] = [customer_id, *categories, to_text(since), *history_params, *sent_params]
        if until is not None:
            sql += " AND COALESCE(send_at, issued_at) < ?"
            params.append(to_text(until))
        return self.conn.execute(sql, params).fetchone()[0]

    def messages_between(self, since: datetime, until: datetime | None = None,
                         for_run: str | None = None) -> dict[str, list[tuple[str | None, datetime, str | None]]]:
        """Bulk form for the caps: customer id → [(category, send time, template)] of messages sent after
        ``since`` (and before ``until``) in the history run ``for_run`` sees, in time order."""
        table, history, history_params = self._history(for_run)
        sent, sent_params = self._not_recalled(for_run, "issued")
        sql = ("SELECT customer_id, category, COALESCE(send_at, issued_at) AS t, template FROM " + table + " "
               f"WHERE kind = 'message' AND COALESCE(send_at, issued_at) > ? AND {history} AND {sent}")
        params: list[Any] = [to_text(since), *history_params, *sent_params]
        if until is not None:
            sql += " AND COALESCE(send_at, issued_at) < ?"
            params.append(to_text(until))
        out: dict[str, list[tuple[str | None, datetime, str | None]]] = {}
        parsed: dict[str, datetime] = {}
        for customer_id, category, moment, template in self.conn.execute(sql + " ORDER BY customer_id, t, key", params):
            when = parsed.get(moment)
            if when is None:
                when = parsed[moment] = datetime.fromisoformat(moment)
            out.setdefault(customer_id, []).append((category, when, template))
        return out

    def pending_messages(self, after: datetime, for_run: str | None = None) -> list[Entry]:
        """Messages issued in the history run ``for_run`` sees whose send time is later than ``after``
        (not sent yet) and that no run it sees recalled, by customer, send time and key: what a run
        checks again for recall (``engine.guards.find_recalls``)."""
        self.conn.execute(_BY_SEND_AT_INDEX)  # a ledger made before the index gets it (once)
        table, history, params = self._history(for_run, "issued")
        sent, sent_params = self._not_recalled(for_run, "issued")
        sql = (f"SELECT {', '.join(FIELDS)} FROM {table} WHERE kind = 'message' AND send_at > ? AND {history} AND {sent} "
               "ORDER BY customer_id, send_at, key")
        return [_entry(row) for row in self.conn.execute(sql, [to_text(after), *params, *sent_params])]

    def recall_count(self, run_id: str) -> int:
        """How many earlier messages run ``run_id`` recalled."""
        return self.conn.execute("SELECT COUNT(*) FROM recalls WHERE run_id = ?", (run_id,)).fetchone()[0]

    def recalls_by(self, run_id: str) -> dict[str, tuple[str, str, str, str]]:
        """The messages run ``run_id`` recalled: key → (issued by, recalled at, guard, reason) (``verify``)."""
        return {key: rest for key, *rest in self.conn.execute(
            "SELECT key, issued_by, recalled_at, guard, reason FROM recalls WHERE run_id = ? ORDER BY key", (run_id,))}

    def has_run(self, run_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def runs(self) -> list[dict[str, Any]]:
        """Recorded runs in the order they were first recorded."""
        rows = self.conn.execute("SELECT run_id, seq, as_of, tasks, messages, withdrawn_at, withdrawn_reason FROM runs ORDER BY seq")
        return [{"run_id": r[0], "seq": r[1], "as_of": datetime.fromisoformat(r[2]), "tasks": r[3], "messages": r[4],
                 "withdrawn_at": _from_text(r[5]), "withdrawn_reason": r[6]} for r in rows]

    def forget_runs_after(self, run_id: str) -> None:
        """Drop the rows of runs recorded after ``run_id``: for a scratch copy in which that run is
        executed again (``verify``). They cannot change what it sees, and a withdrawn run's items,
        issued again by a later run, would clash with its re-recorded rows."""
        self.conn.execute("BEGIN IMMEDIATE")
        later = "SELECT run_id FROM runs WHERE seq > (SELECT seq FROM runs WHERE run_id = ?)"
        for table in ("issued", "withdrawn_issued", "recalls"):
            self.conn.execute(f"DELETE FROM {table} WHERE run_id IN ({later})", (run_id,))
        self.conn.execute(f"DELETE FROM runs WHERE run_id IN ({later})", (run_id,))
        self.conn.execute("COMMIT")

    def withdrawn(self, run_id: str) -> tuple[datetime, str] | None:
        """(when, why) if run ``run_id`` was withdrawn, else None."""
        row = self.conn.execute("SELECT withdrawn_at, withdrawn_reason FROM runs WHERE run_id = ? AND withdrawn_at IS NOT NULL",
                                (run_id,)).fetchone()
        return (datetime.fromisoformat(row[0]), row[1]) if row else None

    def withdraw(self, run_id: str, reason: str, at: datetime) -> tuple[int, int]:
        """Take run ``run_id`` back: what it issued no longer holds anything back (dedupe, caps),
        so a corrected batch issues it. Its rows are kept aside, readable. Returns (tasks, messages)
        withdrawn. ``at``: the wall-clock moment, a naive local time as every time here."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            counts = dict(self.conn.execute("SELECT kind, COUNT(*) FROM issued WHERE run_id = ? GROUP BY kind", (run_id,)))
            self.conn.execute("INSERT INTO withdrawn_issued SELECT * FROM issued WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM issued WHERE run_id = ?", (run_id,))
            self.conn.execute("UPDATE runs SET withdrawn_at = ?, withdrawn_reason = ?, withdrawn_seq = (SELECT MAX(seq) FROM runs) "
                              "WHERE run_id = ?", (to_text(at), reason, run_id))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return counts.get("task", 0), counts.get("message", 0)

    def copy_to(self, path: Path | str) -> None:
        """A consistent copy of the ledger (SQLite's backup API), e.g. for ``verify``: the re-run
        reads the history the run saw and records into the copy, leaving the real ledger alone."""
        target = sqlite3.connect(str(path))
        try:
            self.conn.backup(target)
        finally:
            target.close()

    # -- writing -------------------------------------------------------------------------------
    def record(self, run_id: str, as_of_time: datetime, tasks: Iterable[Task], messages: Iterable[Message],
               recalls: Iterable[Any] = ()) -> None:
        """Record what a run issued (and the earlier messages it recalled: ``engine.guards.Recall``), in
        one transaction. Replaces the rows this run id recorded
        before (a re-execution). Raises if a key was already issued by another run: that means
        the guards were bypassed (or two runs wrote at once), and silently keeping either row
        would hide it."""
        self.stage(run_id, as_of_time, tasks, messages, recalls)
        self.commit()

    def commit(self) -> None:
        """Make what ``stage`` wrote permanent."""
        self.conn.execute("COMMIT")

    def discard(self) -> None:
        """Undo what ``stage`` wrote (nothing to undo is fine)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def stage(self, run_id: str, as_of_time: datetime, tasks: Iterable[Task], messages: Iterable[Message],
              recalls: Iterable[Any] = ()) -> None:
        """``record`` up to its commit: the rows are written in an open transaction (holding the
        ledger's write lock) until ``commit`` or ``discard``. A batch run stages while it writes
        its files and commits once its run folder is in place; killed in between, SQLite rolls
        the transaction back. Raises as ``record`` does, with nothing left staged."""
        issued_at = to_text(as_of_time)
        texts: dict[datetime | None, str | None] = {None: None}  # most items share a few times: format each once

        def text(moment: datetime | None) -> str | None:
            if moment not in texts:
                texts[moment] = to_text(moment)
            return texts[moment]

        tasks, messages = list(tasks), list(messages)
        for kind, items in (("task", tasks), ("message", messages)):
            for item in items:
                if not item.key:
                    raise ValueError(f"rule {item.rule_id}: a {kind} without an idempotency key cannot be recorded")

        def rows() -> Iterator[tuple]:  # made as SQLite takes them: a large run's rows are not all held at once
            for t in tasks:
                yield (t.key, "task", t.customer_id, t.rule_id, t.stage, None, t.category, None, t.assignee,
                       t.priority, None, text(t.due), run_id, issued_at)
            for m in messages:
                yield (m.key, "message", m.customer_id, m.rule_id, m.stage, m.channel, m.category, m.template, None,
                       None, text(m.send_at), None, run_id, issued_at)

        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("DELETE FROM issued WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM withdrawn_issued WHERE run_id = ?", (run_id,))  # issued again: it stands
            self.conn.execute("DELETE FROM recalls WHERE run_id = ?", (run_id,))
            # A re-executed run keeps its place in the order; a new run goes last.
            known = self.conn.execute("SELECT seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            seq = known[0] if known else self.conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            self.conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            self.conn.execute("INSERT INTO runs (run_id, seq, as_of, tasks, messages) VALUES (?, ?, ?, ?, ?)",
                              (run_id, seq, issued_at, len(tasks), len(messages)))
            try:
                self.conn.executemany(f"INSERT INTO issued ({', '.join(FIELDS)}) VALUES ({', '.join('?' for _ in FIELDS)})", rows())
            except sqlite3.IntegrityError:
                raise LedgerError(Problem(
                    code="ledger-duplicate",
                    message=f"运行 {run_id} 要记录的任务或消息已由其他运行发出（或本次重复）；未写入台账"
                            f" / run {run_id} tried to record an item another run already issued (or twice); nothing was recorded",
                    location=Location(file=str(self.path)),
                    fix="再运行一次：发送保护会跳过已由其他运行发出的项 / run again: the guards then skip what another run issued",
                )) from None
            self.conn.executemany(
                "INSERT INTO recalls (key, issued_by, run_id, recalled_at, guard, reason) VALUES (?, ?, ?, ?, ?, ?)",
                ((r.key, r.issued_by, run_id, issued_at, r.guard, r.reason) for r in recalls))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # -- reading for people --------------------------------------------------------------------
    def entries(self, customer_id: str | None = None, rule_id: str | None = None,
                since: date | datetime | None = None, kind: str | None = None, run_id: str | None = None,
                newest_first: bool = False, limit: int | None = None) -> Iterator[Entry]:
        """Entries matching every filter given; ``since`` compares with the issuing run's as-of
        instant (a date means from the start of that day). Oldest first unless ``newest_first``.
        Withdrawn runs' entries too, with their ``withdrawn_at``."""
        clauses, params = [], []
        for column, value in (("customer_id", customer_id), ("rule_id", rule_id), ("kind", kind), ("run_id", run_id)):
            if value is not None:
                clauses.append(f"i.{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("i.issued_at >= ?")
            params.append(_since_text(since))
        # The run that recalled a message (one not withdrawn; the first, should two have).
        recalled = ("(SELECT MIN(rc.run_id) FROM recalls AS rc JOIN runs AS rr ON rr.run_id = rc.run_id "
                    "WHERE rc.key = i.key AND i.kind = 'message' AND rr.withdrawn_at IS NULL)")
        sql = (f"SELECT {', '.join('i.' + f for f in FIELDS)}, r.withdrawn_at, {recalled} FROM all_issued AS i "
               "LEFT JOIN runs AS r ON r.run_id = i.run_id")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        direction = "DESC" if newest_first else "ASC"
        sql += f" ORDER BY i.issued_at {direction}, i.customer_id, i.kind, i.key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        for row in self.conn.execute(sql, params):
            yield _entry(row)

    def count(self, customer_id: str | None = None, rule_id: str | None = None,
              since: date | datetime | None = None, kind: str | None = None, run_id: str | None = None) -> int:
        return sum(1 for _ in self.entries(customer_id, rule_id, since, kind, run_id))


# -- the ``crm-engine ledger`` command's logic ------------------------------------------------------

KIND_LABELS = {"task": "任务", "message": "消息"}

# (entry field, header, xlsx kind) for show and export
EXPORT_COLUMNS = [
    ("issued_at", "批次时刻 as-of", "datetime"),  # the run's as-of instant, not when it ran
    ("kind", "类型 kind", "text"),
    ("customer_id", "客户编号 customer", "text"),
    ("rule_id", "规则 rule", "text"),
    ("stage", "阶段 stage", "text"),
    ("channel", "渠道 channel", "text"),
    ("category", "类别 category", "text"),
    ("template", "模板 template", "text"),
    ("assignee", "负责人 assignee", "text"),
    ("priority", "优先级 priority", "text"),
    ("send_at", "发送时间 send at", "datetime"),
    ("due", "截止时间 due", "datetime"),
    ("run_id", "运行编号 run", "text"),
    ("key", "幂等键 key", "text"),
    ("withdrawn_at", "撤回时间 withdrawn", "datetime"),
    ("recalled_by", "已撤回发送的运行 recalled by", "text"),  # a message issued ahead, recalled before its send time
]


@contextmanager
def one_run_at_a_time(ledger_path: Path, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the ledger for one run: from checking the guards against it until its rows are committed.

    A lock on the hidden file ``.<ledger name>.lock`` beside the ledger (kept there: removing it
    would race with the next run opening it). A run that finds it held says so through ``waiting``
    and waits for the other run to end. The operating system lets go of the lock when the process
    ends, however it ends, so a killed run never leaves the ledger locked. Where there is no
    ``fcntl`` (Windows) runs are not kept apart: a second run's overlapping items then fail its
    commit (``ledger-duplicate``) and it can be run again."""
    if fcntl is None:
        yield
        return
    ledger_path = Path(ledger_path)
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = ledger_path.with_name(f".{ledger_path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only is enough to lock it
    except OSError as exc:
        raise LedgerError(Problem(
            code="ledger-lock", message=f"无法打开台账的锁文件 / cannot open the ledger's lock file {lock_path} ({exc.strerror})",
            location=Location(file=str(lock_path)),
            fix="让运行者可以在台账所在文件夹中创建和读取文件 / let whoever runs it create and read files in the ledger's folder",
        )) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"等待另一次运行结束：它正在使用联系台账 {ledger_path} / waiting for another run using this contact ledger")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def entry_row(entry: Entry) -> dict[str, Any]:
    """An entry as people see it: kind, stage and category in Chinese, everything else as stored.
    A task's category is 任务: tasks carry "service" unless the policy gave them another category
    (shown as written), and 服务 is a message's kind of content (consent, caps), not a task's."""
    row = asdict(entry)
    row["kind"] = KIND_LABELS.get(entry.kind, entry.kind)
    row["stage"] = STAGE_LABELS.get(entry.stage or "", entry.stage)
    if entry.kind == "task" and entry.category in (None, "service"):
        row["category"] = KIND_LABELS["task"]
    else:
        row["category"] = CATEGORY_LABELS.get(entry.category or "", entry.category)
    return row


def show_rows(ledger: Ledger, customer_id: str | None = None, rule_id: str | None = None,
              since: date | datetime | None = None, kind: str | None = None, run_id: str | None = None,
              limit: int | None = 50) -> tuple[list[dict[str, Any]], int]:
    """The newest ``limit`` matching entries (as display rows) and how many match in all."""
    total = ledger.count(customer_id, rule_id, since, kind, run_id)
    rows = [entry_row(e) for e in ledger.entries(customer_id, rule_id, since, kind, run_id, newest_first=True, limit=limit)]
    return rows, total


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table for the terminal (CJK characters count two columns)."""
    columns = [(f, h.split(" ")[0]) for f, h, _ in EXPORT_COLUMNS
               if f in ("issued_at", "kind", "customer_id", "rule_id", "channel", "category", "assignee", "send_at", "due", "run_id",
                        "withdrawn_at", "recalled_by")]

    def cell(value: Any) -> str:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        return "" if value is None else str(value)

    return format_rows([h for _, h in columns], [[cell(r.get(f)) for f, _ in columns] for r in rows])


def format_rows(header: list[str], rows: list[list[str]]) -> str:
    """Text cells as an aligned table for the terminal (CJK characters count two columns)."""
    from engine.xlsx_out import display_width

    table = [header, *rows]
    widths = [max(display_width(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for line in table:
        lines.append("  ".join(text + " " * (widths[i] - display_width(text)) for i, text in enumerate(line)).rstrip())
    return "\n".join(lines)


def export(ledger: Ledger, path: Path | str, customer_id: str | None = None, rule_id: str | None = None,
           since: date | datetime | None = None, kind: str | None = None, run_id: str | None = None) -> int:
    """Write matching entries (oldest first) to ``path``: ``.xlsx`` (styled workbook) or ``.csv``
    (UTF-8 with BOM, so Excel shows Chinese correctly). Returns the number of entries written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise ValueError(f"export to .xlsx or .csv, not '{path.suffix or path.name}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0

    def rows() -> Iterator[list[Any]]:
        nonlocal count
        for entry in ledger.entries(customer_id, rule_id, since, kind, run_id):
            count += 1
            row = entry_row(entry)
            yield [row[f] for f, _, _ in EXPORT_COLUMNS]

    if suffix == ".xlsx":
        columns = [Column(h, kind=k) for _, h, k in EXPORT_COLUMNS]
        write_workbook(path, [Sheet("联系台账", columns, rows())], title="联系台账 contact ledger")
        return count
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([h for _, h, _ in EXPORT_COLUMNS])
        for values in rows():
            # The same formula-injection guard as the xlsx writer: CSV files are opened in Excel too.
            writer.writerow(["" if v is None else v.isoformat(sep=" ", timespec="minutes") if isinstance(v, datetime)
                             else escape_text(str(v)) for v in values])
    return count
