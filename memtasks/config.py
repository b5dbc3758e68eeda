"""All configuration, read in one place from ``MEMTASKS_*`` environment variables."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memtasks.domain.decay import MAX_CREATED_BY_CHARS, check_created_by
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.errors import ValidationError as DomainValidationError
from memtasks.domain.masking import mask_url
from memtasks.domain.queues import QUEUES
from memtasks.domain.sweeps import SWEEP_NAMES
from memtasks.domain.urls import check_broker_url, check_redis_url

PositiveSeconds = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
"""A duration (seconds, hours or days): finite, above 0, and at most 1e9 so that it fits in
integer milliseconds (1e9 days is 8.6e16 ms; BIGINT holds 9.2e18)."""
URL_FIELDS = frozenset({"database_url", "broker_url", "lock_redis_url"})
"""Settings that may hold a password: masked wherever the settings are shown."""


def default_data_dir() -> Path:
    return Path.cwd() / ".memtasks"


def check_queue_list(value: str) -> str:
    """Comma-separated queue names, each one of :data:`~memtasks.domain.queues.QUEUES`, none
    twice; returned without spaces (``"critical, default"`` → ``"critical,default"``)."""
    names = [name.strip() for name in value.split(",")]
    valid = ", ".join(QUEUES)
    if not any(names):
        raise ValueError(f"names no queue (comma-separated, each one of {valid})")
    unknown = [name for name in names if name not in QUEUES]
    if unknown:
        shown = ", ".join(repr(name)[:60] for name in unknown[:5])
        raise ValueError(f"unknown queue {shown} (comma-separated, each one of {valid})")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"names {', '.join(twice)} twice")
    return ",".join(names)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_listen_address(value: str) -> str:
    """An address to listen on: an IPv4 or IPv6 address (``0.0.0.0``: every interface) or a
    host name (``localhost``)."""
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    name = value.removesuffix(".")
    if 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        return value
    raise ValueError(
        f"{value[:60]!r} is neither an IP address nor a host name (e.g. 127.0.0.1, 0.0.0.0, ::, localhost)"
    )


MAX_COUNT = 1_000_000_000
"""Upper bound of counts: every integer setting fits the 32/64-bit columns it meets."""

MAX_BATCH = 100_000
"""Upper bound of batch sizes: one statement, one transaction."""


class Settings(BaseSettings):
    """memtasks settings. Every field is also ``MEMTASKS_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="MEMTASKS_", extra="ignore", frozen=True, validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir, description="SQLite file location")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: sqlite under data_dir"
    )
    broker_url: str = "redis://127.0.0.1:6379/0"
    lock_redis_url: str = "redis://127.0.0.1:6379/1"
    auto_migrate: bool = Field(default=True, description="apply migrations when an engine opens")
    sqlite_journal_mode: str = "wal"
    sqlite_busy_timeout_s: PositiveSeconds = 15.0
    pool_size: int = Field(default=5, ge=1, le=1_000)
    db_lock_timeout_s: PositiveSeconds = Field(
        default=1.0,
        description="PostgreSQL: longest wait for a row lock; a job that meets one is deferred",
    )
    db_idle_in_transaction_s: PositiveSeconds | None = Field(
        default=None,
        description="PostgreSQL: the server ends a session idle inside a transaction this long"
        " (a lost host's locks are released); default: the lease",
    )
    db_dead_peer_s: PositiveSeconds = Field(
        default=15.0,
        description="PostgreSQL: keepalives and tcp_user_timeout give up on a silent peer"
        " after about this long",
    )

    lease_s: PositiveSeconds = 300.0
    backoff_base_s: PositiveSeconds = 60.0
    backoff_cap_s: PositiveSeconds = 3600.0
    backoff_jitter: float = Field(default=0.1, ge=0, le=1)
    max_attempts: int = Field(default=5, ge=1, le=100, description="attempts of a memory-tree job")
    decay_max_attempts: int = Field(default=3, ge=1, le=100, description="attempts of a decay job")
    defer_max_age_s: PositiveSeconds = 7 * 24 * 3600.0
    retention_days: PositiveSeconds = 14.0
    archive_grace_days: float = Field(
        default=7.0,
        ge=0,
        le=36_500,
        allow_inf_nan=False,
        description="pruned messages, outcomes and finished jobs stay restorable in the archive"
        " this long; 0 deletes them at once",
    )

    consolidate_min_hours: float = Field(default=24.0, ge=0, le=1e9, allow_inf_nan=False)
    consolidate_min_sessions: int = Field(default=5, ge=0, le=MAX_COUNT)
    consolidate_max_message_age_days: int = Field(default=30, ge=1, le=36_500)
    consolidate_max_outcomes_per_sender: int = Field(default=100, ge=0, le=MAX_COUNT)
    consolidate_batch_size: int = Field(default=1000, ge=1, le=MAX_BATCH)
    consolidate_lock_ttl_s: PositiveSeconds = 300.0

    tree_fanout: int = Field(default=8, ge=2, le=1024, description="items per memory-tree summary")
    tree_stale_after_s: PositiveSeconds = 1800.0
    tree_reembed_batch: int = Field(default=256, ge=1, le=MAX_BATCH)

    retrieval_failure_retention_days: PositiveSeconds = 90.0
    retrieval_failure_capacity: int = Field(default=256, ge=1, le=MAX_COUNT)
    retrieval_failure_batch_size: int = Field(default=16, ge=1, le=MAX_BATCH)
    retrieval_failure_flush_interval_s: PositiveSeconds = 0.1

    tree_uses_llm: bool = Field(
        default=False, description="the text models call an LLM: LLM-bound kinds go to the llm queue"
    )
    llm_permits: int = Field(default=1, ge=1, le=10_000, description="fleet-wide concurrent LLM-bound jobs")
    llm_budget: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="fleet-wide LLM spend per period, in the unit the model plug-ins report (unset: none)",
    )
    llm_budget_per_agent: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="LLM spend per period of each agent or tenant (a job's fair-share lane; unset: none)",
    )
    llm_budget_period_s: float = Field(
        default=86_400.0,
        ge=1,
        le=366 * 86_400,
        allow_inf_nan=False,
        description="the budgets' period, aligned to the Unix epoch (86400: a UTC day)",
    )
    llm_permit_ttl_s: PositiveSeconds = 600.0
    llm_wait_s: PositiveSeconds = 5.0
    handlers: str | None = Field(default=None, description="module:callable returning a HandlerRegistry")
    text_models: str | None = Field(default=None, description="module:callable returning TextModels")

    operator_public_key: str | None = Field(
        default=None, description="path of the operators' Ed25519 public key (PEM) for LLM attestations"
    )
    llm_model: str | None = Field(default=None, description="the pinned model name LLM summaries run with")
    llm_prompt_template_hash: str | None = Field(default=None, description="the pinned prompt-template hash")
    summary_backend: str | None = Field(
        default=None, description="module:callable returning a SummaryBackend"
    )

    drain_batch: int = Field(
        default=500,
        ge=0,
        le=10_000,
        description="jobs per drain message; 0: always one message per job",
    )
    drain_threshold: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="due jobs of one queue published together that travel as drain messages;"
        " fewer travel one message each (1: always drain messages)",
    )
    task_events: bool = Field(
        default=False,
        description="workers always send task events (Flower turns them on while it watches)",
    )
    redispatch_after_s: PositiveSeconds = 300.0
    publish_timeout_s: PositiveSeconds = 4.0
    broker_socket_timeout_s: float = Field(
        default=5.0,
        ge=0,
        le=1e6,
        allow_inf_nan=False,
        description="Redis broker: a command with no answer this long fails and its connection is"
        " replaced (a connection that went silent without closing); 0: wait for ever (kombu's default)",
    )
    broker_health_check_s: int = Field(
        default=5,
        ge=0,
        le=86_400,
        description="broker health checks every this many seconds: Redis connections idle longer are"
        " pinged before use and a consumer whose BRPOP got no reply past it reconnects;"
        " RabbitMQ heartbeats; 0: the libraries' defaults (a BRPOP check every 25 s, heartbeats every 120 s)",
    )
    dispatch_batch: int = Field(default=1000, ge=1, le=MAX_BATCH)
    visibility_timeout_s: PositiveSeconds = 3600.0
    worker_max_memory_per_child_kb: int = Field(default=512_000, ge=1, le=2**31 - 1)
    worker_prefetch: int | None = Field(
        default=None,
        ge=1,
        le=1_000,
        description="messages each worker process reserves ahead; default 4, or 1 when the text"
        " models call an LLM (a job that takes minutes would hold the reserved messages back)",
    )
    worker_queues: str = Field(
        default=",".join(QUEUES),
        description="the queues `memtasks worker` consumes: comma-separated names of memtasks' queues",
    )
    worker_concurrency: int | None = Field(
        default=None, ge=1, le=1_000, description="pool processes of `memtasks worker`; default: Celery's"
    )
    metrics_port: int = Field(default=9808, ge=1, le=65_535, description="port of `memtasks metrics`")
    metrics_address: str = Field(
        default="127.0.0.1", description="address `memtasks metrics` listens on: an IP or a host name"
    )
    flower_port: int = Field(
        default=5555, ge=1, le=65_535, description="port of `memtasks flower` and of the demo's Flower"
    )
    flower_allow_unauthenticated: bool = Field(
        default=False,
        description="`memtasks flower` starts beyond loopback without authentication",
    )
    web_port: int = Field(default=9810, ge=1, le=65_535, description="port of `memtasks web`")
    web_address: str = Field(
        default="127.0.0.1", description="address `memtasks web` listens on: an IP or a host name"
    )
    web_basic_auth: SecretStr | None = Field(
        default=None,
        description="`memtasks web` asks for HTTP basic auth: user:password (comma-separated pairs)",
    )
    web_allow_unauthenticated: bool = Field(
        default=False,
        description="`memtasks web` starts beyond loopback without authentication",
    )
    web_read_only: bool = Field(
        default=False, description="`memtasks web` shows and never changes: no retry, cancel or requeue"
    )
    operator: str | None = Field(
        default=None, description="who asks for the decay jobs `memtasks enqueue decay` creates"
    )
    beat_intervals: dict[str, PositiveSeconds] = Field(default_factory=dict)

    breaker_threshold: int = Field(default=3, ge=1, le=10_000)
    breaker_cooldown_s: PositiveSeconds = 30.0
    metrics_interval_s: float = Field(
        default=15.0,
        ge=0.1,
        le=86_400,
        allow_inf_nan=False,
        description="the exporter reads the tables at most once per this many seconds",
    )

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return check_broker_url(value)

    @field_validator("lock_redis_url")
    @classmethod
    def _lock_redis_url(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("beat_intervals")
    @classmethod
    def _beat_intervals(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - SWEEP_NAMES)
        if unknown:
            shown = ", ".join(repr(name)[:60] for name in unknown[:5])
            raise ValueError(f"names unknown sweeps: {shown} (known: {', '.join(sorted(SWEEP_NAMES))})")
        return value

    @field_validator("worker_queues")
    @classmethod
    def _worker_queues(cls, value: str) -> str:
        return check_queue_list(value)

    @field_validator("metrics_address", "web_address")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        return check_listen_address(value)

    @field_validator("web_basic_auth")
    @classmethod
    def _web_basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for entry in value.get_secret_value().split(","):
            user, colon, password = entry.partition(":")
            if not (colon and user.strip() and password):
                raise ValueError("must be user:password (comma-separated pairs), neither part empty")
        return value

    @field_validator("operator")
    @classmethod
    def _operator(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_created_by(value)
        except DomainValidationError as exc:
            detail = str(exc).removeprefix("created_by ")
            limit = f"(a non-blank name of at most {MAX_CREATED_BY_CHARS} characters)"
            raise ValueError(f"{detail} {limit}") from None

    @field_validator("sqlite_journal_mode")
    @classmethod
    def _journal_mode(cls, value: str) -> str:
        allowed = {"wal", "delete", "truncate", "persist", "memory", "off"}
        if value.lower() not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value.lower()

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one or the SQLite default."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'memtasks.sqlite3').resolve()}"

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """``repr``/``str`` (and so ``celery inspect conf`` and Flower's config view, which show
        the app's ``memtasks_settings``) with every URL's password masked."""
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name in URL_FIELDS and isinstance(value, str) else value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with ``overrides``; a clear error when invalid."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a value that must be JSON (MEMTASKS_BEAT_INTERVALS) is not
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "*"
        raise ConfigurationError(f"invalid settings: MEMTASKS_{field.upper()}: not valid JSON") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"MEMTASKS_{'_'.join(str(p) if str(p).isidentifier() else repr(p) for p in err['loc']).upper()}: "
            f"{err['msg']}{_valid_range(err['loc'])}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    if settings.backoff_cap_s < settings.backoff_base_s:
        raise ConfigurationError("invalid settings: MEMTASKS_BACKOFF_CAP_S must be ≥ MEMTASKS_BACKOFF_BASE_S")
    return settings


def field_bounds(name: str) -> tuple[Any, Any] | None:
    """(lowest, highest) allowed value of the setting ``name`` when it is bounded on both sides."""
    field = Settings.model_fields.get(name)
    if field is None:
        return None
    low = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
    return None if low is None or high is None else (low, high)


def _valid_range(loc: tuple[int | str, ...]) -> str:
    """`` (valid: 1 to 65535)`` for a field bounded on both sides; empty otherwise."""
    bounds = field_bounds(str(loc[0])) if len(loc) == 1 else None
    return "" if bounds is None else f" (valid: {bounds[0]} to {bounds[1]})"
