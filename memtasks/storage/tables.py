"""The durable tables. Times are Unix milliseconds (UTC) in BIGINT columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from memtasks.domain.decay import DecayKind, DecayState, SummaryMethod
from memtasks.domain.jobs import FailureClass, JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _one_of(column: str, values: list[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _partial(where: str) -> dict[str, Any]:
    """Keyword arguments that make an index partial on both dialects."""
    clause = text(where)
    return {"sqlite_where": clause, "postgresql_where": clause}


ACTIVE_WHERE = "status IN ('ready', 'running')"
DEDUPE_WHERE = "dedupe_key IS NOT NULL AND " + ACTIVE_WHERE

mem_tree_jobs = Table(
    "mem_tree_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("dedupe_key", String(512)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False),
    Column("available_at_ms", BigInteger, nullable=False),
    Column("locked_until_ms", BigInteger),
    Column("lease_token", String(64)),
    Column("heartbeat_at_ms", BigInteger),
    Column("last_error", Text),
    Column("failure_reason", Text),
    Column("failure_class", String(16)),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    # When a message was last published for the row (NULL: none since it became ready).
    Column("dispatched_at_ms", BigInteger),
    # The backoff the last failed attempt was given (kept after success, for operators).
    Column("last_backoff_ms", BigInteger),
    # When the row last changed (the database's clock, like every time the queue writes).
    Column("updated_at_ms", BigInteger, nullable=False, server_default=text("0")),
    # The worker (host:pid) of the last claim, and what each attempt did (JSON array, 0008).
    Column("claimed_by", String(200)),
    Column("attempt_history", Text),
    # The job whose handler enqueued this one as a follow-up (0011); NULL for a producer's.
    Column("parent_id", String(64)),
    # Fair share (0014): the job's lane (agent or tenant; '' shared) and its place in it.
    Column("fair_key", String(128), nullable=False, server_default=text("''")),
    Column("fair_seq", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint(_one_of("status", [s.value for s in JobStatus]), name="status"),
    CheckConstraint(
        "failure_class IS NULL OR " + _one_of("failure_class", [c.value for c in FailureClass]),
        name="failure_class",
    ),
    CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    CheckConstraint(
        "status <> 'running' OR (lease_token IS NOT NULL AND locked_until_ms IS NOT NULL)",
        name="running_lease",
    ),
    # Every index is partial: a row is in an index only while the hot path needs it there,
    # so an insert writes the primary key and the ready index, a claim the lease index, a
    # settle the finished index.
    # The claim path: ready rows in priority order, then lane by lane (each row's place in its
    # lane, memtasks.domain.fairness); its size follows the backlog.
    Index("ix_mem_tree_jobs_ready", "priority", "fair_seq", **_partial("status = 'ready'")),
    # Where each lane ends, for placing new rows; per-lane depth for operators.
    Index("ix_mem_tree_jobs_lane", "fair_key", "fair_seq", **_partial("status = 'ready'")),
    Index("ix_mem_tree_jobs_lease", "locked_until_ms", **_partial("status = 'running'")),
    Index("ix_mem_tree_jobs_finished", "completed_at_ms", **_partial("completed_at_ms IS NOT NULL")),
    # A dedupe key is held while its row is ready or running.
    Index("uq_mem_tree_jobs_dedupe_active", "dedupe_key", unique=True, **_partial(DEDUPE_WHERE)),
    # The failed rows, newest first, for an operator (counts and lists of what failed); a
    # job enters it only when it fails.
    Index("ix_mem_tree_jobs_failed", "id", **_partial("status = 'failed'")),
    # A job's follow-ups, for an operator: only rows a handler enqueued are in it.
    Index("ix_mem_tree_jobs_parent_id", "parent_id", **_partial("parent_id IS NOT NULL")),
)

decay_jobs = Table(
    "decay_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("source_ids_json", Text, nullable=False),
    Column("summary_method", String(40), nullable=False),
    Column("attestation_required", Boolean, nullable=False, server_default=text("true")),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("result_memory_id", String(64)),
    Column("scheduled_for_ms", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False, server_default=text("3")),
    Column("lease_token", String(64)),
    Column("locked_until_ms", BigInteger),
    Column("dispatched_at_ms", BigInteger),
    # The queue engine's columns, named as in mem_tree_jobs (migration 0005).
    Column("priority", SmallInteger, nullable=False, server_default=text("4")),
    Column("last_error", Text),
    Column("failure_class", String(16)),
    Column("last_backoff_ms", BigInteger),
    Column("started_at_ms", BigInteger),
    Column("completed_at_ms", BigInteger),
    Column("heartbeat_at_ms", BigInteger),
    # An operator's signed attestation handed to the fleet with the job (LLM summaries only).
    Column("attestation_json", Text),
    Column("claimed_by", String(200)),
    Column("attempt_history", Text),
    Column("fair_key", String(128), nullable=False, server_default=text("''")),
    Column("fair_seq", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint(_one_of("state", [s.value for s in DecayState]), name="state"),
    CheckConstraint(_one_of("kind", [k.value for k in DecayKind]), name="kind"),
    CheckConstraint(_one_of("summary_method", [m.value for m in SummaryMethod]), name="summary_method"),
    CheckConstraint(
        "state <> 'failed' OR (state_reason IS NOT NULL AND length(trim(state_reason)) > 0)",
        name="failed_reason",
    ),
    CheckConstraint(
        "state <> 'in_progress' OR (lease_token IS NOT NULL AND locked_until_ms IS NOT NULL)",
        name="in_progress_lease",
    ),
    CheckConstraint(
        "failure_class IS NULL OR " + _one_of("failure_class", [c.value for c in FailureClass]),
        name="failure_class",
    ),
    CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    # The claim path, as for mem_tree_jobs: pending rows in priority order, lane by lane.
    Index("ix_decay_jobs_ready", "priority", "fair_seq", **_partial("state = 'pending'")),
    Index("ix_decay_jobs_lane", "fair_key", "fair_seq", **_partial("state = 'pending'")),
    Index("ix_decay_jobs_lease", "locked_until_ms", **_partial("state = 'in_progress'")),
    Index("ix_decay_jobs_state", "state"),
    Index("ix_decay_jobs_completed_at_ms", "completed_at_ms"),
)

# One row per periodic sweep: a beat tick claims its slot with a compare-and-set on
# ``last_slot``, so two beats running at once still produce one run per slot.
sweeps = Table(
    "sweeps",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_slot", BigInteger, nullable=False),
    Column("interval_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("finished_at_ms", BigInteger),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    CheckConstraint("outcome IN ('running', 'ok', 'failed')", name="outcome"),
)

# What operators did to jobs by hand (the web console's actions): who, when, what, to how many.
operator_actions = Table(
    "operator_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("via", String(16), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", Text, nullable=False),
    Column("affected", Integer, nullable=False),
    Index("ix_operator_actions_at_ms", "at_ms"),
)

# LLM budgets (0015): what each scope (the fleet, an agent) spent per period, and what the
# jobs admitted and not yet settled are expected to cost (memtasks.domain.budgets).
llm_spend = Table(
    "llm_spend",
    metadata,
    Column("scope", String(160), nullable=False),
    Column("period_start_ms", BigInteger, nullable=False),
    Column("spent", Float, nullable=False, server_default=text("0")),
    Column("jobs", Integer, nullable=False, server_default=text("0")),
    Column("max_job_cost", Float, nullable=False, server_default=text("0")),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("scope", "period_start_ms"),
)

llm_reservations = Table(
    "llm_reservations",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("scope", String(160), nullable=False),
    Column("period_start_ms", BigInteger, nullable=False),
    Column("amount", Float, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("job_id", "scope"),
    Index("ix_llm_reservations_scope_period_start_ms", "scope", "period_start_ms"),
)
