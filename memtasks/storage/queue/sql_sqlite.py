"""The queue engine's hot-path SQL for SQLite: the statements of ``sql_postgresql``, in
SQLite's words.

The same templates and names (see that module). Parameters are ``:name``; lists travel as
JSON text read with ``json_each`` (SQLite has no arrays). Each statement is one implicit
transaction under SQLite's write lock, so no row is ever claimed twice and nothing needs
``SKIP LOCKED``.

**One clock: the database's.** ``now`` is ``julianday('now')`` in Unix milliseconds, which
SQLite keeps the same for every use within one statement; a test may bind ``:now``.
"""

from __future__ import annotations

NOW = "COALESCE(:now, CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER))"

HISTORY_KEPT = 20


def _history(outcome: str, error: str) -> str:
    """The ``SET`` item that appends the ending attempt to ``attempt_history`` (see
    ``sql_postgresql._history``)."""
    past = "COALESCE(attempt_history, '[]')"
    return (
        f" attempt_history = json_insert(CASE WHEN json_array_length({past}) >= {HISTORY_KEPT}"
        f" THEN json_remove({past}, '$[0]') ELSE {past} END, '$[#]', json_object("
        "'attempt', attempts, 'worker', claimed_by, 'started_ms', started_at_ms,"
        f" 'ended_ms', {NOW}, 'outcome', {outcome}, 'error', {error}))"
    )


_CLAIM_SET = (
    " SET {status} = '{running}', attempts = attempts + 1, started_at_ms = " + NOW + ","
    " updated_at_ms = " + NOW + ", locked_until_ms = " + NOW + " + :lease_ms,"
    " lease_token = :token, heartbeat_at_ms = NULL, last_error = NULL, claimed_by = :worker"
)

CLAIM_BY_ID = (
    "UPDATE {table} AS j" + _CLAIM_SET + " WHERE j.id = :id AND j.{status} = '{ready}'"
    " AND j.{due} <= " + NOW + " + :early_ms AND {claimable} RETURNING *"
)

CLAIM_BATCH = (
    "UPDATE {table}" + _CLAIM_SET + " WHERE id IN (SELECT j.id FROM {table} AS j"
    " WHERE j.{status} = '{ready}' AND j.{due} <= " + NOW + " AND {claimable} AND {unattended}"
    " AND (:kinds IS NULL OR j.kind IN (SELECT value FROM json_each(:kinds)))"
    " ORDER BY j.priority, j.fair_seq LIMIT :limit) RETURNING *"
)

CLAIM_NEXT = CLAIM_BATCH.replace("LIMIT :limit", "LIMIT 1")

_FENCE = " WHERE id = :id AND lease_token = :token AND {status} = '{running}'"
_FENCE_MANY = (
    " WHERE (id, lease_token) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
    " FROM json_each(:pairs)) AND {status} = '{running}'"
)

HEARTBEAT = "UPDATE {table} SET locked_until_ms = " + NOW + " + :lease_ms, heartbeat_at_ms = " + NOW + _FENCE

_DONE_SET = (
    " SET {status} = '{done}', completed_at_ms = " + NOW + ", updated_at_ms = " + NOW + ","
    " locked_until_ms = NULL, lease_token = NULL," + _history("'done'", "NULL")
)
SETTLE_DONE = "UPDATE {table}" + _DONE_SET + _FENCE
SETTLE_DONE_MANY = "UPDATE {table}" + _DONE_SET + _FENCE_MANY

SETTLE_RETRY = (
    "UPDATE {table} SET {status} = '{ready}', {due} = " + NOW + " + :retry_in_ms,"
    " last_backoff_ms = :retry_in_ms, last_error = :error, failure_class = :failure_class,"
    " {reason} = :reason, locked_until_ms = NULL, lease_token = NULL, dispatched_at_ms = NULL,"
    " updated_at_ms = " + NOW + "," + _history("'retry'", ":error") + _FENCE + " RETURNING {due}"
)

SETTLE_FAILED = (
    "UPDATE {table} SET {status} = '{failed}', completed_at_ms = " + NOW + ", updated_at_ms = " + NOW + ","
    " last_error = :error, failure_class = :failure_class, {reason} = :reason,"
    " locked_until_ms = NULL, lease_token = NULL,"
    + _history("'failed'", ":error")
    + _FENCE
    + " RETURNING {due}"
)

_AGED = "(" + NOW + " - created_at_ms > :max_age_ms)"
SETTLE_DEFERRED = (
    "UPDATE {table} SET"
    " {status} = CASE WHEN " + _AGED + " THEN '{failed}' ELSE '{ready}' END,"
    " {due} = CASE WHEN " + _AGED + " THEN {due} ELSE max(:until_ms, " + NOW + ") END,"
    " attempts = CASE WHEN " + _AGED + " THEN attempts ELSE attempts - 1 END,"
    " completed_at_ms = CASE WHEN " + _AGED + " THEN " + NOW + " ELSE completed_at_ms END,"
    " {reason} = CASE WHEN " + _AGED + " THEN :age_reason ELSE {reason} END,"
    " failure_class = CASE WHEN " + _AGED + " THEN 'unrecoverable' ELSE failure_class END,"
    " last_error = CASE WHEN " + _AGED + " THEN COALESCE(:error, :age_reason) ELSE :error END,"
    " dispatched_at_ms = NULL, locked_until_ms = NULL, lease_token = NULL, updated_at_ms = "
    + NOW
    + ","
    + _history(
        "CASE WHEN " + _AGED + " THEN 'failed' ELSE 'deferred' END",
        "COALESCE(:error, CASE WHEN " + _AGED + " THEN :age_reason END)",
    )
    + _FENCE
    + " RETURNING {status}, {due}, attempts"
)

RELEASE_MANY = (
    "UPDATE {table} SET {status} = '{ready}', {due} = " + NOW + ", attempts = max(attempts - 1, 0),"
    " locked_until_ms = NULL, lease_token = NULL, dispatched_at_ms = NULL, updated_at_ms = "
    + NOW
    + ","
    + _history("'released'", "NULL")
    + _FENCE_MANY
)

_EXHAUSTED = "attempts >= max_attempts"
RECOVER_EXPIRED = (
    "UPDATE {table} SET"
    " {status} = CASE WHEN " + _EXHAUSTED + " THEN '{failed}' ELSE '{ready}' END,"
    " {due} = " + NOW + ","
    " completed_at_ms = CASE WHEN " + _EXHAUSTED + " THEN " + NOW + " ELSE completed_at_ms END,"
    " {reason} = CASE WHEN " + _EXHAUSTED + " THEN :exhausted ELSE {reason} END,"
    " failure_class = CASE WHEN " + _EXHAUSTED + " THEN 'transient' ELSE failure_class END,"
    " last_error = COALESCE(last_error, :recovered),"
    " locked_until_ms = NULL, lease_token = NULL, dispatched_at_ms = NULL, updated_at_ms = "
    + NOW
    + ","
    + _history("'lease_expired'", ":recovered")
    + " WHERE id IN (SELECT j.id FROM {table} AS j WHERE j.{status} = '{running}'"
    " AND j.locked_until_ms < " + NOW + " ORDER BY j.locked_until_ms LIMIT :limit)"
    " RETURNING id, {status}"
)

MARK_FOR_DISPATCH = (
    "UPDATE {table} SET dispatched_at_ms = " + NOW + " WHERE id IN (SELECT j.id FROM {table} AS j"
    " WHERE j.{status} = '{ready}' AND j.{due} <= " + NOW + " AND {claimable} AND {unattended}"
    " AND (j.dispatched_at_ms IS NULL OR j.dispatched_at_ms <= " + NOW + " - :redispatch_after_ms)"
    " ORDER BY j.priority, j.fair_seq LIMIT :limit) RETURNING *"
)

FORGET_DISPATCH = (
    "UPDATE {table} SET dispatched_at_ms = NULL"
    " WHERE id IN (SELECT value FROM json_each(:ids)) AND {status} = '{ready}'"
)

POSTPONE = (
    "UPDATE {table} SET {due} = " + NOW + " + :delay_ms, dispatched_at_ms = NULL,"
    " updated_at_ms = " + NOW + " WHERE id = :id AND {status} = '{ready}'"
)

DATABASE_NOW = "SELECT " + NOW
