"""One initialised engine per database URL per process.

Initialisation (connect, SQLite pragmas, migrations) is serialised per URL and guarded by
the init circuit breaker. A forked child gets fresh connections: an engine created in
another process is disposed without touching the parent's sockets.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError, SQLAlchemyError

from memtasks.domain import masking
from memtasks.domain.errors import ConfigurationError, DatabaseUnavailable, StorageError
from memtasks.storage.breaker import CircuitBreaker

log = logging.getLogger(__name__)

SUPPORTED = ("sqlite", "postgresql")
SQLITE_CORRUPT_MARKERS = ("file is not a database", "database disk image is malformed")
SQLITE_JOURNAL_MODES = frozenset({"wal", "delete", "truncate", "persist", "memory", "off"})


@dataclass(frozen=True, slots=True)
class EngineOptions:
    busy_timeout_s: float = 15.0
    journal_mode: str = "wal"
    pool_size: int = 5
    connect_timeout_s: int = 5
    auto_migrate: bool = True
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 30.0
    read_only: bool = False
    """Open for reads only: a SQLite file is opened ``mode=ro`` (never created, its directory
    never made), a PostgreSQL session with ``default_transaction_read_only``; no migration."""
    create: bool = True
    """A SQLite file that does not exist is created (with its directory); False: an error
    naming the path. Implied False by ``read_only``."""
    lock_timeout_s: float = 1.0
    """PostgreSQL: a statement waits at most this long for a row lock, then fails (see
    ``memtasks.storage.lock_wait``); a job that meets one is deferred, its attempt refunded."""
    idle_in_transaction_s: float = 300.0
    """PostgreSQL: the server ends a session left idle inside a transaction this long — a
    host that vanished mid-transaction releases its row locks (sized against the lease)."""
    dead_peer_s: float = 15.0
    """PostgreSQL: TCP keepalives and ``tcp_user_timeout`` on both ends, so the server drops a
    lost client's session, and a client a dead server's connection, within about this long."""


def mask_url(url: str | URL) -> str:
    """The URL with its password (and credential query values) hidden, safe for logs and errors."""
    return masking.mask_url(url.render_as_string(hide_password=False) if isinstance(url, URL) else url)


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL; :class:`ConfigurationError` when it is wrong."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number
        raise ConfigurationError(
            f"invalid database URL {mask_url(url)!r}: expected sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB (set MEMTASKS_DATABASE_URL)"
        ) from None
    if "@" in (parsed.host or ""):  # the driver would take the password's tail for the host
        raise ConfigurationError(
            f"invalid database URL {mask_url(url)!r}: the user or password holds an unescaped '@' "
            "— write it as %40 (set MEMTASKS_DATABASE_URL)"
        )
    backend = parsed.get_backend_name()
    if backend == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
        backend = "postgresql"
    elif backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend not in SUPPORTED:
        raise ConfigurationError(
            f"unsupported database {backend!r} in {mask_url(parsed)}: memtasks runs on "
            "sqlite or postgresql (set MEMTASKS_DATABASE_URL)"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigurationError(
            f"{mask_url(parsed)} names no file: memtasks needs a SQLite file that every "
            "worker process can open (e.g. sqlite:////var/lib/memtasks/memtasks.sqlite3)"
        )
    return parsed


def _key(url: URL, read_only: bool = False) -> str:
    """The registry key of a URL: the full URL, password included (never logged); a
    read-only engine is kept apart from the read-write one of the same URL."""
    return url.render_as_string(hide_password=False) + (" (read-only)" if read_only else "")


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engines: dict[str, Engine] = {}
        self.pids: dict[str, int] = {}
        self.init_locks: dict[str, threading.Lock] = {}
        self.breakers: dict[str, CircuitBreaker] = {}


_registry = _Registry()


def breaker_for(url: str, options: EngineOptions | None = None) -> CircuitBreaker:
    """The init circuit breaker of ``url`` in this process."""
    options = options or EngineOptions()
    key = _key(parse_url(url))
    with _registry.lock:
        breaker = _registry.breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                mask_url(key),
                threshold=options.breaker_threshold,
                cooldown_s=options.breaker_cooldown_s,
            )
            _registry.breakers[key] = breaker
        return breaker


def get_engine(url: str, options: EngineOptions | None = None) -> Engine:
    """The initialised engine for ``url`` in this process, creating it on first use."""
    options = options or EngineOptions()
    parsed = parse_url(url)
    key = _key(parsed, options.read_only)
    pid = os.getpid()
    with _registry.lock:
        engine = _registry.engines.get(key)
        if engine is not None and _registry.pids[key] == pid:
            return engine
        init_lock = _registry.init_locks.setdefault(key, threading.Lock())
    breaker = breaker_for(url, options)
    with init_lock:
        with _registry.lock:
            engine = _registry.engines.get(key)
            if engine is not None and _registry.pids[key] != pid:
                # Inherited through fork: leave the parent's connections alone.
                engine.dispose(close=False)
                del _registry.engines[key]
                engine = None
            if engine is not None:
                return engine
        breaker.before_attempt()
        try:
            engine = _open(parsed, options)
        except BaseException:
            # Any way out of a trial counts as a failure, or a half-open breaker would
            # wait forever for the verdict of a trial that never reports.
            breaker.record_failure()
            raise
        breaker.record_success()
        with _registry.lock:
            _registry.engines[key] = engine
            _registry.pids[key] = pid
        return engine


def dispose_all() -> None:
    """Close every engine of this process (tests, worker shutdown)."""
    with _registry.lock:
        engines = list(_registry.engines.values())
        _registry.engines.clear()
        _registry.pids.clear()
    for engine in engines:
        engine.dispose()


def reset_registry() -> None:
    """Forget every engine and breaker (tests only)."""
    dispose_all()
    with _registry.lock:
        _registry.breakers.clear()
        _registry.init_locks.clear()


def _open(url: URL, options: EngineOptions) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _open_sqlite(url, options, quarantine_allowed=True)
    return _open_postgresql(url, options)


def session_settings(options: EngineOptions) -> dict[str, str]:
    """The server settings every memtasks session on PostgreSQL starts with.

    Nobody waits on a lost host: a row lock is waited for ``lock_timeout`` at most; a session
    idle inside a transaction (its host cut off mid-transaction, or stopped) is ended by the
    server after ``idle_in_transaction_session_timeout``, its locks released; keepalives and
    ``tcp_user_timeout`` let the server notice a peer that is gone where TCP can tell.
    """
    keepalive = _keepalive(options.dead_peer_s)
    settings = {
        "lock_timeout": f"{_ms(options.lock_timeout_s)}",
        "idle_in_transaction_session_timeout": f"{_ms(options.idle_in_transaction_s)}",
        "tcp_keepalives_idle": str(keepalive["keepalives_idle"]),
        "tcp_keepalives_interval": str(keepalive["keepalives_interval"]),
        "tcp_keepalives_count": str(keepalive["keepalives_count"]),
        "tcp_user_timeout": str(keepalive["tcp_user_timeout"]),
    }
    if options.read_only:
        # Every transaction of the session is read-only: a write fails instead of happening.
        settings["default_transaction_read_only"] = "on"
    return settings


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _keepalive(dead_peer_s: float) -> dict[str, int]:
    """libpq's keepalive parameters (and the server's of the same names) that give up on a
    silent peer after about ``dead_peer_s``: idle a third of it, then up to 5 probes."""
    idle = max(1, int(dead_peer_s / 3))
    remaining = dead_peer_s - idle
    count = max(1, min(5, int(remaining)))
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": max(1, int(remaining / count)),
        "keepalives_count": count,
        "tcp_user_timeout": _ms(dead_peer_s),
    }


def _open_postgresql(url: URL, options: EngineOptions) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": options.connect_timeout_s}
    connect_args.update(_keepalive(options.dead_peer_s))
    # The URL's own ``options`` (a search_path, say) are kept: connect_args replaces them.
    given = url.query.get("options")
    given = " ".join(given) if isinstance(given, tuple) else (given or "")
    ours = " ".join(f"-c {name}={value}" for name, value in session_settings(options).items())
    connect_args["options"] = f"{given} {ours}".strip()
    engine = create_engine(
        url,
        pool_size=options.pool_size,
        max_overflow=options.pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    _install_idle_ping(engine)
    return _finish(engine, url, options)


IDLE_PING_AFTER_S = 5.0


def _install_idle_ping(engine: Engine) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    ``pool_pre_ping`` would cost a round trip on every checkout — most of a short job's
    time. A connection used moments ago is alive; one idle for ``IDLE_PING_AFTER_S`` may
    have been closed by a database restart and is checked (and replaced) first.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["memtasks_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("memtasks_idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
            return
        try:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            # The ping opened a transaction: end it, or the connection is handed out inside
            # one and cannot be switched to autocommit (one_statement) for its claim.
            dbapi_conn.rollback()
        except Exception as exc:  # the pool discards this connection and opens another
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def no_database(path: Path | str) -> ConfigurationError:
    """The error of a command that needs a memtasks database where there is none."""
    return ConfigurationError(
        f"no memtasks database at {path} — run `memtasks db upgrade` "
        "(or check MEMTASKS_DATABASE_URL / MEMTASKS_DATA_DIR)"
    )


def _read_only_sqlite_url(path: Path) -> URL:
    """``file:PATH?mode=ro`` as a URI filename: SQLite opens the file for reading and never
    creates it (WAL files included: a reader of a WAL database uses the existing ones)."""
    return URL.create(
        "sqlite", database=f"file:{quote(str(path.resolve()))}", query={"mode": "ro", "uri": "true"}
    )


def _open_sqlite(url: URL, options: EngineOptions, *, quarantine_allowed: bool) -> Engine:
    path = Path(str(url.database))
    if options.read_only or not options.create:
        if not path.is_file():
            raise no_database(path)
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the directory of {path}: {exc.strerror}") from None
    target = _read_only_sqlite_url(path) if options.read_only else url
    engine = create_engine(target, pool_size=options.pool_size, max_overflow=options.pool_size)
    _install_sqlite_pragmas(engine, options)
    try:
        return _finish(engine, url, options)
    except StorageError as exc:
        if quarantine_allowed and not options.read_only and _is_corrupt(exc) and path.exists():
            quarantine_sqlite(path)
            return _open_sqlite(url, options, quarantine_allowed=False)
        raise


def _is_corrupt(exc: BaseException) -> bool:
    text_ = str(exc).lower()
    return any(marker in text_ for marker in SQLITE_CORRUPT_MARKERS)


def quarantine_sqlite(path: Path) -> Path:
    """Move a corrupt database and its ``-wal``/``-shm`` files aside; nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(Path(f"{target}{suffix}"))
    log.error("memtasks: corrupt SQLite database %s quarantined as %s", path, target)
    return target


def _install_sqlite_pragmas(engine: Engine, options: EngineOptions) -> None:
    wanted = str(options.journal_mode).lower()
    if wanted not in SQLITE_JOURNAL_MODES:  # interpolated into a PRAGMA below: only these words
        raise ConfigurationError(
            f"unknown SQLite journal mode {options.journal_mode!r:.40}: expected one of "
            f"{', '.join(sorted(SQLITE_JOURNAL_MODES))} (set MEMTASKS_SQLITE_JOURNAL_MODE)"
        )
    busy_ms = int(options.busy_timeout_s * 1000)  # a PRAGMA takes no bound parameter: an int only
    read_only = options.read_only

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # We issue BEGIN ourselves (see _on_begin); pysqlite's own handling is off.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if options.read_only:
                # The journal mode is the file's (setting it would write); nothing else to do.
                cursor.execute("PRAGMA query_only = ON")
                return
            cursor.execute("PRAGMA foreign_keys = ON")
            got = str(cursor.execute(f"PRAGMA journal_mode = {wanted}").fetchone()[0]).lower()
            if got != wanted:
                raise StorageError(
                    f"SQLite refused journal_mode={wanted} (it reports {got}); "
                    "set MEMTASKS_SQLITE_JOURNAL_MODE to a mode this file system supports"
                )
            cursor.execute("PRAGMA synchronous = " + ("NORMAL" if wanted == "wal" else "FULL"))
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that later writes can
        # fail with "database is locked" without waiting for the busy timeout. Reads
        # (storage.rows.reading) begin deferred: a WAL snapshot, never blocked by a writer.
        if read_only or conn.get_execution_options().get("memtasks_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _finish(engine: Engine, url: URL, options: EngineOptions) -> Engine:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        if options.auto_migrate and not options.read_only:
            from memtasks.storage.migrate import upgrade

            upgrade(engine)
    except StorageError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnavailable(
            f"cannot use the database at {mask_url(url)}: {_first_line(exc.orig)}"
        ) from None
    except (SQLAlchemyError, NoSuchModuleError, OSError) as exc:
        engine.dispose()
        raise StorageError(f"cannot use the database at {mask_url(url)}: {_first_line(exc)}") from None
    return engine


def _first_line(exc: BaseException | None) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
