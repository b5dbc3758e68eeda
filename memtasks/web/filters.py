"""The job filters of the console's lists and of ``/api/jobs``, read from a query string and
checked: a bad value is a 400 naming the parameter and what it accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from memtasks.domain.jobs import FailureClass
from memtasks.domain.queues import QUEUES
from memtasks.services.admin import RequeueFilter, Table, kinds_of, status_words

MINUTE_MS = 60_000


class BadFilter(ValueError):
    """A query parameter the console cannot take; its message names it."""


@dataclass(frozen=True, slots=True)
class JobFilter:
    table: Table = Table.MEM_TREE
    queue: str | None = None
    kind: str | None = None
    status: str | None = None
    failure_class: str | None = None
    older_than_min: int | None = None
    q: str | None = None
    before: str | None = None

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with ``changes`` (None drops a parameter)."""
        values = {
            "table": self.table.value,
            "queue": self.queue,
            "kind": self.kind,
            "status": self.status,
            "failure_class": self.failure_class,
            "older_than_min": self.older_than_min,
            "q": self.q,
            "before": self.before,
        } | changes
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})

    def page_arguments(self, now_ms: int, kinds_of_queue: list[str] | None) -> dict[str, Any]:
        kinds: list[str] | None = None
        if self.kind is not None:
            kinds = [self.kind]
        elif kinds_of_queue is not None:
            kinds = kinds_of_queue
        older_ms = None if self.older_than_min is None else self.older_than_min * MINUTE_MS
        return {
            "before_id": self.before,
            "status": self.status,
            "kinds": kinds,
            "failure_class": self.failure_class,
            "created_before_ms": None if older_ms is None else now_ms - older_ms,
            "search": self.q,
        }

    def requeue_filter(self) -> RequeueFilter:
        """The failed jobs a bulk requeue with this filter takes."""
        return RequeueFilter(
            table=self.table,
            kind=self.kind,
            failure_class=None if self.failure_class is None else FailureClass(self.failure_class),
            failed_before_age_ms=None if self.older_than_min is None else self.older_than_min * MINUTE_MS,
        )


def _one_of(name: str, value: str | None, allowed: list[str]) -> str | None:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise BadFilter(f"{name} must be one of {', '.join(allowed)}; got {str(value)[:40]!r}")
    return value


def read_filter(params: Mapping[str, str]) -> JobFilter:
    table_word = params.get("table") or Table.MEM_TREE.value
    tables = [Table.MEM_TREE.value, Table.DECAY.value]
    table = Table(_one_of("table", table_word, tables) or Table.MEM_TREE.value)
    older = params.get("older_than_min") or None
    if older is not None and (not older.isdigit() or int(older) > 10_000_000):
        raise BadFilter("older_than_min must be a whole number of minutes")
    q = (params.get("q") or "").strip() or None
    if q is not None and len(q) > 512:
        raise BadFilter("q (a job id or a dedupe key) is at most 512 characters")
    before = params.get("before") or None
    if before is not None and len(before) > 64:
        raise BadFilter("before must be a job id (the cursor of the next page)")
    return JobFilter(
        table=table,
        queue=_one_of("queue", params.get("queue"), list(QUEUES)),
        kind=_one_of("kind", params.get("kind"), sorted(kinds_of(table))),
        status=_one_of("status", params.get("status"), status_words(table)),
        failure_class=_one_of("failure_class", params.get("failure_class"), [c.value for c in FailureClass]),
        older_than_min=None if older is None else int(older),
        q=q,
        before=before,
    )


__all__ = ["BadFilter", "JobFilter", "read_filter"]
