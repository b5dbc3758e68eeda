"""The queue engine's hot-path SQL for PostgreSQL: each statement written once, by name.

Templates over one job table: ``{table}``, ``{status}``, ``{due}``, ``{reason}`` name its
columns, ``{ready}``, ``{running}``, ``{done}``, ``{failed}`` are its state words (literals in
the SQL, so that the planner matches the partial indexes ``WHERE status = 'ready'``), and
``{claimable}`` / ``{unattended}`` are its conditions for a row that may be claimed at all /
that the fleet claims by itself (``memtasks.storage.queue.table``).
Everything else is a bound parameter (psycopg's ``%(name)s``; arrays of ids and tokens as
``%(name)b``, in binary, which spares quoting each element in Python). Each template is
rendered once per table when the engine starts; psycopg prepares a statement after a few
uses on a connection.

**Plans that stay O(batch).** A statement over many rows names them with ``j.id = ANY(…)``,
so the planner reaches each through the primary key; joined to a CTE or to ``unnest`` it
would hash the whole table (or loop over the lease index once per row) whenever its
statistics say few rows are running.

**A claim commits without waiting for the disk.** The claims set ``synchronous_commit`` off
for their own one-statement transaction (``set_config(…, true)`` in the ``n`` CTE): a claim a
database crash loses leaves its row ready, as if it had never been claimed, and the job runs
again — what a crash between claim and settle does anyway. A settle still waits for the
flush, and it flushes the claim's record written before it, so no settle outlives its claim.
The claims always run on their own, never inside a caller's transaction.

**One clock: the database's.** ``now`` is ``clock_timestamp()`` in Unix milliseconds, read
once per statement (the ``n`` CTE); a test may bind ``%(now)s`` to freeze it instead.
"""

from __future__ import annotations

NOW = (
    "WITH n AS (SELECT COALESCE(CAST(%(now)s AS BIGINT),"
    " CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)) AS now)"
)

HISTORY_KEPT = 20
"""``attempt_history`` keeps the last this many attempts of a job."""


def _history(outcome: str, error: str) -> str:
    """The ``SET`` item that appends the ending attempt to ``attempt_history`` (a JSON array,
    the oldest entry dropped past :data:`HISTORY_KEPT`). It reads the row as the claim left it:
    the attempt's number, its worker and start."""
    past = "COALESCE(CAST(j.attempt_history AS jsonb), CAST('[]' AS jsonb))"
    return (
        f" attempt_history = CAST((CASE WHEN jsonb_array_length({past}) >= {HISTORY_KEPT}"
        f" THEN {past} - 0 ELSE {past} END) || jsonb_build_array(jsonb_build_object("
        "'attempt', j.attempts, 'worker', j.claimed_by, 'started_ms', j.started_at_ms,"
        f" 'ended_ms', n.now, 'outcome', {outcome}, 'error', {error})) AS text)"
    )


NOW_UNFLUSHED = NOW.removesuffix(")") + ", set_config('synchronous_commit', 'off', true) AS unflushed)"
"""``NOW``, and this statement's transaction commits without waiting for the WAL flush."""

CLAIM_BY_ID = (
    NOW_UNFLUSHED + " UPDATE {table} AS j SET {status} = '{running}', attempts = j.attempts + 1,"
    " started_at_ms = n.now, updated_at_ms = n.now, locked_until_ms = n.now + %(lease_ms)s,"
    " lease_token = %(token)s, heartbeat_at_ms = NULL, last_error = NULL, claimed_by = %(worker)s"
    " FROM n WHERE j.id = %(id)s AND j.{status} = '{ready}' AND j.{due} <= n.now + %(early_ms)s"
    " AND {claimable}"
    " RETURNING j.*"
)

CLAIM_BATCH = (
    NOW_UNFLUSHED + ", picked AS MATERIALIZED (SELECT j.id FROM {table} AS j, n"
    " WHERE j.{status} = '{ready}' AND j.{due} <= n.now AND {claimable} AND {unattended}"
    " AND (CAST(%(kinds)s AS text[]) IS NULL OR j.kind = ANY(CAST(%(kinds)s AS text[])))"
    " ORDER BY j.priority, j.fair_seq LIMIT %(limit)s FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE {table} AS j SET {status} = '{running}', attempts = j.attempts + 1,"
    " started_at_ms = n.now, updated_at_ms = n.now, locked_until_ms = n.now + %(lease_ms)s,"
    " lease_token = %(token)s, heartbeat_at_ms = NULL, last_error = NULL, claimed_by = %(worker)s"
    " FROM n WHERE j.id = ANY(ARRAY(SELECT picked.id FROM picked)) RETURNING j.*"
)

CLAIM_NEXT = CLAIM_BATCH.replace("LIMIT %(limit)s", "LIMIT 1")
"""The claim of one row: a plan that never changes, so it is prepared (``CLAIM_BATCH`` is
planned per call for its limit)."""

HEARTBEAT = (
    NOW + " UPDATE {table} AS j SET locked_until_ms = n.now + %(lease_ms)s, heartbeat_at_ms = n.now"
    " FROM n WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.{status} = '{running}'"
)

SETTLE_DONE = (
    NOW + " UPDATE {table} AS j SET {status} = '{done}', completed_at_ms = n.now, updated_at_ms = n.now,"
    " locked_until_ms = NULL, lease_token = NULL," + _history("'done'", "NULL") + ""
    " FROM n WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.{status} = '{running}'"
)

SETTLE_DONE_MANY = (
    NOW + " UPDATE {table} AS j SET {status} = '{done}', completed_at_ms = n.now, updated_at_ms = n.now,"
    " locked_until_ms = NULL, lease_token = NULL," + _history("'done'", "NULL") + ""
    " FROM n, unnest(CAST(%(ids)b AS text[]), CAST(%(tokens)b AS text[])) AS l(id, token)"
    " WHERE j.id = ANY(CAST(%(ids)b AS text[])) AND j.id = l.id AND j.lease_token = l.token"
    " AND j.{status} = '{running}'"
)

SETTLE_RETRY = (
    NOW + " UPDATE {table} AS j SET {status} = '{ready}', {due} = n.now + %(retry_in_ms)s,"
    " last_backoff_ms = %(retry_in_ms)s, last_error = %(error)s, failure_class = %(failure_class)s,"
    " {reason} = %(reason)s, locked_until_ms = NULL, lease_token = NULL, dispatched_at_ms = NULL,"
    " updated_at_ms = n.now," + _history("'retry'", "CAST(%(error)s AS text)") + ""
    " FROM n WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.{status} = '{running}'"
    " RETURNING j.{due}"
)

SETTLE_FAILED = (
    NOW + " UPDATE {table} AS j SET {status} = '{failed}', completed_at_ms = n.now, updated_at_ms = n.now,"
    " last_error = %(error)s, failure_class = %(failure_class)s, {reason} = %(reason)s,"
    " locked_until_ms = NULL, lease_token = NULL," + _history("'failed'", "CAST(%(error)s AS text)") + ""
    " FROM n WHERE j.id = %(id)s AND j.lease_token = %(token)s AND j.{status} = '{running}'"
    " RETURNING j.{due}"
)

# A deferral past the age cap (now − created_at > max_age) fails as unrecoverable instead.
SETTLE_DEFERRED = (
    NOW + ", aged AS (SELECT j.id, n.now - j.created_at_ms > %(max_age_ms)s AS aged"
    " FROM {table} AS j, n WHERE j.id = %(id)s)"
    " UPDATE {table} AS j SET"
    " {status} = CASE WHEN aged.aged THEN '{failed}' ELSE '{ready}' END,"
    " {due} = CASE WHEN aged.aged THEN j.{due} ELSE GREATEST(CAST(%(until_ms)s AS BIGINT), n.now) END,"
    " attempts = CASE WHEN aged.aged THEN j.attempts ELSE j.attempts - 1 END,"
    " completed_at_ms = CASE WHEN aged.aged THEN n.now ELSE j.completed_at_ms END,"
    " {reason} = CASE WHEN aged.aged THEN %(age_reason)s ELSE j.{reason} END,"
    " failure_class = CASE WHEN aged.aged THEN 'unrecoverable' ELSE j.failure_class END,"
    " last_error = CASE WHEN aged.aged THEN COALESCE(%(error)s, %(age_reason)s) ELSE %(error)s END,"
    " dispatched_at_ms = NULL, locked_until_ms = NULL, lease_token = NULL, updated_at_ms = n.now,"
    + _history(
        "CASE WHEN aged.aged THEN 'failed' ELSE 'deferred' END",
        "COALESCE(CAST(%(error)s AS text), CASE WHEN aged.aged THEN CAST(%(age_reason)s AS text) END)",
    )
    + " FROM n, aged WHERE j.id = aged.id AND j.lease_token = %(token)s AND j.{status} = '{running}'"
    " RETURNING j.{status}, j.{due}, j.attempts"
)

RELEASE_MANY = (
    NOW + " UPDATE {table} AS j SET {status} = '{ready}', {due} = n.now,"
    " attempts = GREATEST(j.attempts - 1, 0), locked_until_ms = NULL, lease_token = NULL,"
    " dispatched_at_ms = NULL, updated_at_ms = n.now," + _history("'released'", "NULL") + ""
    " FROM n, unnest(CAST(%(ids)b AS text[]), CAST(%(tokens)b AS text[])) AS l(id, token)"
    " WHERE j.id = ANY(CAST(%(ids)b AS text[])) AND j.id = l.id AND j.lease_token = l.token"
    " AND j.{status} = '{running}'"
)

# Expired leases: rows another transaction holds (a settle in flight, or stalled mid-commit)
# are skipped, never waited for; the next sweep takes them if they are still expired then.
RECOVER_EXPIRED = (
    NOW + ", expired AS MATERIALIZED (SELECT j.id FROM {table} AS j, n"
    " WHERE j.{status} = '{running}' AND j.locked_until_ms < n.now"
    " ORDER BY j.locked_until_ms LIMIT %(limit)s FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE {table} AS j SET"
    " {status} = CASE WHEN j.attempts >= j.max_attempts THEN '{failed}' ELSE '{ready}' END,"
    " {due} = n.now,"
    " completed_at_ms = CASE WHEN j.attempts >= j.max_attempts THEN n.now ELSE j.completed_at_ms END,"
    " {reason} = CASE WHEN j.attempts >= j.max_attempts THEN %(exhausted)s ELSE j.{reason} END,"
    " failure_class = CASE WHEN j.attempts >= j.max_attempts THEN 'transient' ELSE j.failure_class END,"
    " last_error = COALESCE(j.last_error, %(recovered)s),"
    " locked_until_ms = NULL, lease_token = NULL, dispatched_at_ms = NULL, updated_at_ms = n.now,"
    + _history("'lease_expired'", "CAST(%(recovered)s AS text)")
    + " FROM n WHERE j.id = ANY(ARRAY(SELECT expired.id FROM expired)) RETURNING j.id, j.{status}"
)

MARK_FOR_DISPATCH = (
    NOW + ", picked AS MATERIALIZED (SELECT j.id FROM {table} AS j, n"
    " WHERE j.{status} = '{ready}' AND j.{due} <= n.now AND {claimable} AND {unattended}"
    " AND (j.dispatched_at_ms IS NULL OR j.dispatched_at_ms <= n.now - %(redispatch_after_ms)s)"
    " ORDER BY j.priority, j.fair_seq LIMIT %(limit)s FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE {table} AS j SET dispatched_at_ms = n.now"
    " FROM n WHERE j.id = ANY(ARRAY(SELECT picked.id FROM picked))"
    " RETURNING j.*"
)

FORGET_DISPATCH = (
    "UPDATE {table} AS j SET dispatched_at_ms = NULL"
    " WHERE j.id = ANY(CAST(%(ids)b AS text[])) AND j.{status} = '{ready}'"
)

POSTPONE = (
    NOW + " UPDATE {table} AS j SET {due} = n.now + %(delay_ms)s, dispatched_at_ms = NULL,"
    " updated_at_ms = n.now FROM n WHERE j.id = %(id)s AND j.{status} = '{ready}'"
)

DATABASE_NOW = NOW + " SELECT n.now FROM n"
