"""Documents and index keys nx-27017 examines for each command a client sends: the numbers
MongoDB's `explain` calls totalDocsExamined and totalKeysExamined.

nx-27017 0.8.1 has no such statistics: its `explain` answers `executionStats` with zeros
written into the reply, and its plan comes from the `find` translation, not from the
`findAndModify` or `update` a store actually sends (those are translated differently, and a
`findAndModify` may scan where a `find` of the same filter would not). Nor does it keep a
profile. So this module asks SQLite itself, on the database's own file:

1. A pymongo `CommandListener` sees every command the client sends to one database, just
   before it is sent (the state the server is about to read).
2. The command is replayed through nx-27017's own engine (neosqlite, the same version the
   server runs, as the server's handler calls it) against an empty in-memory copy of the
   database's schema, to get the SQL the server runs for it (SQLite's trace).
3. Each statement that looks documents up is run again, read-only, on the server's SQLite file,
   with two counting functions put in front of its WHERE: `ak_key(id)` is answered from the
   index alone (before SQLite reads the row), `ak_doc(data)` needs the document. SQLite calls
   them once for each index entry it steps on and each document it reads; the query plan is
   checked to be the same as the statement's own.

The counts are those of the statement that finds the documents a command works on (MongoDB's
query stage); writing the document found is not counted, as MongoDB does not count it either.
Only nx-27017 run with `--data-dir` (one SQLite file per database) is supported: in its
single-file mode every database shares one set of tables.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from neosqlite import Connection
from pymongo import monitoring

# What the server's handler passes to neosqlite for each command (nx_27017/handler.py 0.8.1).
SELECTING = ("findAndModify", "update", "find", "delete", "count")

_NOT_EXAMINED = ("sqlite_", "neosqlite_", "_neosqlite", "pragma_")


class NotMeasurable(RuntimeError):
    """The server is not an nx-27017 with one SQLite file per database on this machine."""


@dataclass
class Examined:
    """What one command (or a sum of them) examined."""

    docs: int = 0
    keys: int = 0
    commands: int = 0
    statements: int = 0
    plans: dict[str, int] = field(default_factory=dict)
    # Documents examined by each kind of command (`findAndModify`, `update`, ...).
    by_command: dict[str, int] = field(default_factory=dict)

    def add(self, other: Examined) -> None:
        self.docs += other.docs
        self.keys += other.keys
        self.commands += other.commands
        self.statements += other.statements
        for plan, n in other.plans.items():
            self.plans[plan] = self.plans.get(plan, 0) + n
        for name, n in other.by_command.items():
            self.by_command[name] = self.by_command.get(name, 0) + n

    @property
    def scanned(self) -> bool:
        """Whether any statement read a collection table from end to end."""
        return any(plan.split()[0] == "SCAN" for plan in self.plans)


def nx_data_dir(mongo_uri: str, data_root: Path) -> Path:
    """The `--data-dir` of the nx-27017 of the local stack under `data_root` that listens on
    the URI's port (found by the stack's PID files: `<data_root>/mongo*/nx-27017.pid`)."""
    port = urlsplit(mongo_uri).port or 27017
    for pid_file in sorted(data_root.glob("mongo*/nx-27017.pid")):
        try:
            pid = int(pid_file.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        options = dict(itertools.pairwise(argv))
        if options.get("-p", options.get("--port")) != str(port):
            continue
        if "--data-dir" not in options:
            raise NotMeasurable(
                f"the nx-27017 on port {port} keeps every database in one file (no --data-dir)"
            )
        return Path(options["--data-dir"])
    raise NotMeasurable(f"no nx-27017 of the local stack under {data_root} listens on {port}")


class ExaminedCounter(monitoring.CommandListener):
    """Counts what each command sent to `database` makes nx-27017 examine (see the module).

    Register it with the client (`AsyncMongoClient(..., event_listeners=[counter])`), call
    `open(data_dir)` once the database's collections and indexes exist, then read `take()`.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.enabled = False
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._tally = Examined()
        self._file: sqlite3.Connection | None = None
        self._mirror: Connection | None = None
        self._trace: list[str] = []
        self._key_calls = 0
        self._doc_calls = 0

    # --- set-up ------------------------------------------------------------------------------

    def open(self, data_dir: Path) -> None:
        """Read the database's file (read-only) and copy its schema into the in-memory mirror."""
        path = data_dir / f"{self.database}.db"
        if not path.exists():
            raise NotMeasurable(f"{path} does not exist (is the server in --data-dir mode?)")
        self.close()
        self._file = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._file.create_function("ak_key", 1, self._count_key)
        self._file.create_function("ak_doc", 1, self._count_doc)
        self.refresh_schema()

    def refresh_schema(self) -> None:
        """Copy the tables and indexes (and neosqlite's notes on them) again, after new ones."""
        assert self._file is not None, "open() first"
        mirror = Connection(":memory:")
        rows = self._file.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND type IN ('table', 'index') ORDER BY type = 'index'"
        ).fetchall()
        for kind, name, sql in rows:
            if name.startswith("sqlite_"):
                continue
            mirror.db.execute(sql.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1))
            if kind == "table" and name.startswith(("neosqlite_", "_neosqlite")):
                columns = [r[1] for r in self._file.execute(f'PRAGMA table_info("{name}")')]
                marks = ", ".join("?" * len(columns))
                for row in self._file.execute(f'SELECT * FROM "{name}"'):
                    mirror.db.execute(f'INSERT OR REPLACE INTO "{name}" VALUES ({marks})', row)
        mirror.db.commit()
        mirror.db.set_trace_callback(self._trace.append)
        if self._mirror is not None:
            self._mirror.close()
        self._mirror = mirror

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._mirror is not None:
            self._mirror.close()
            self._mirror = None

    # --- reading the tally -------------------------------------------------------------------

    def take(self) -> Examined:
        """What was examined since the last `take`; raises if a command could not be measured."""
        with self._lock:
            tally, self._tally = self._tally, Examined()
            errors, self.errors = self.errors, []
        if errors:
            raise RuntimeError("could not measure: " + "; ".join(errors[:3]))
        return tally

    # --- the listener ------------------------------------------------------------------------

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.enabled or event.database_name != self.database:
            return
        if event.command_name not in SELECTING:
            return
        try:
            examined = self.examine(event.command_name, event.command)
        except Exception as exc:  # a listener must not raise into pymongo: kept for take()
            with self._lock:
                self.errors.append(f"{event.command_name}: {exc!r}")
            return
        with self._lock:
            self._tally.add(examined)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    # --- measuring -------------------------------------------------------------------------

    def examine(self, name: str, command: Mapping[str, Any]) -> Examined:
        """What the server will examine for `command` (a command document as sent)."""
        total = Examined(commands=1)
        for sql in self.statements(name, command):
            total.add(self.measure(sql))
        total.by_command[name] = total.docs
        return total

    def statements(self, name: str, command: Mapping[str, Any]) -> list[str]:
        """The SQL nx-27017 runs for the command's look-ups, by replaying it on the mirror."""
        assert self._mirror is not None, "open() first"
        coll = self._mirror[command[name]]
        self._trace.clear()
        for _ in _replay(coll, name, command):
            pass
        return [sql for sql in self._trace if _reads_documents(sql)]

    def measure(self, sql: str) -> Examined:
        """Run a look-up on the server's file with the counting functions in its WHERE."""
        assert self._file is not None, "open() first"
        counted = _instrumented(sql)
        plan = _plan(self._file, sql)
        if _plan(self._file, counted) != plan:
            raise RuntimeError(f"counting changed the plan of {sql[:200]}")
        self._key_calls = self._doc_calls = 0
        with closing(self._file.execute(counted)) as cursor:
            cursor.fetchall()
        outer = plan[0]
        # A SCAN has no index: what it steps on are documents, not keys.
        keys = 0 if outer.startswith("SCAN ") else self._key_calls
        return Examined(
            docs=self._doc_calls, keys=keys, statements=1, plans={_plan_shape(outer): 1}
        )

    def _count_key(self, _: object) -> int:
        self._key_calls += 1
        return 1

    def _count_doc(self, _: object) -> int:
        self._doc_calls += 1
        return 1


def _replay(coll: Any, name: str, command: Mapping[str, Any]) -> Iterator[object]:
    """Call neosqlite as nx-27017's handler does for the command (on the empty mirror)."""
    if name == "findAndModify":
        sort = command.get("sort")
        sort_list = list(sort.items()) if isinstance(sort, Mapping) else sort
        query = dict(command.get("query") or {})
        update = command.get("update")
        if command.get("remove"):
            yield coll.find_one_and_delete(query, sort=sort_list)
        elif isinstance(update, Mapping) and not any(k.startswith("$") for k in update):
            yield coll.find_one_and_replace(query, dict(update), sort=sort_list)
        else:
            yield coll.find_one_and_update(query, dict(update or {}), sort=sort_list)
    elif name == "update":
        for op in command.get("updates", ()):
            q, u = dict(op.get("q") or {}), dict(op.get("u") or {})
            if not any(k.startswith("$") for k in u):
                yield coll.replace_one(q, u)
            elif op.get("multi"):
                yield coll.update_many(q, u)
            else:
                yield coll.update_one(q, u)
    elif name == "delete":
        for op in command.get("deletes", ()):
            q = dict(op.get("q") or {})
            yield coll.delete_many(q) if op.get("limit", 0) == 0 else coll.delete_one(q)
    elif name == "count":
        yield coll.count_documents(dict(command.get("query") or {}))
    elif name == "find":
        cursor = coll.find(dict(command.get("filter") or {}))
        if command.get("sort"):
            cursor = cursor.sort(list(command["sort"].items()))
        if command.get("limit"):
            cursor = cursor.limit(command["limit"])
        if command.get("skip"):
            cursor = cursor.skip(command["skip"])
        yield list(cursor)


_TABLE_READ = re.compile(r'\bFROM\s+"?(\w+)"?', re.IGNORECASE)


def _reads_documents(sql: str) -> bool:
    """A SELECT over a collection's table (not a schema or pragma look-up)."""
    if not sql.lstrip().upper().startswith("SELECT"):
        return False
    match = _TABLE_READ.search(sql)
    return match is not None and not match.group(1).startswith(_NOT_EXAMINED)


def _instrumented(sql: str) -> str:
    """The statement with `ak_key(id) AND ak_doc(data) AND (...)` as its top-level WHERE."""
    match = _TABLE_READ.search(sql)
    assert match is not None
    head, tail = sql[: match.end()], sql[match.end() :]
    end = _top_level(tail, ("ORDER BY", "LIMIT", "GROUP BY"))
    body, rest = tail[:end], tail[end:]
    where = _top_level(body, ("WHERE",))
    counting = "ak_key(id) AND ak_doc(data)"
    if where == len(body):
        return f"{head}{body} WHERE {counting} {rest}"
    condition = body[where + len("WHERE") :]
    return f"{head}{body[:where]}WHERE {counting} AND ({condition.strip()}) {rest}"


def _top_level(sql: str, words: tuple[str, ...]) -> int:
    """Where the first of `words` starts outside brackets and quotes (len(sql) if nowhere)."""
    depth, quote, i = 0, "", 0
    upper = sql.upper()
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] == "_")):
            for word in words:
                if upper.startswith(word, i) and not _word_char(sql, i + len(word)):
                    return i
        i += 1
    return len(sql)


def _word_char(sql: str, i: int) -> bool:
    return i < len(sql) and (sql[i].isalnum() or sql[i] == "_")


def _plan(db: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]


def _plan_shape(detail: str) -> str:
    """A plan line without the table's name: `SEARCH USING INDEX idx_..._x (<expr><?)`."""
    return re.sub(r"^(SCAN|SEARCH) \S+", r"\1", detail)
