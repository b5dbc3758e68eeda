"""What the web console (:mod:`memtasks.web`) reads and does, apart from HTTP: the queue
overview (cached for a moment, whatever the number of open browsers), the charts' series,
keyset pages of jobs, one job with its recorded actions, and the actions — each recorded
with who and when. The queue a kind is routed to comes from the caller (the worker's
routing), as for the exporter.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from memtasks.domain.attestation import PURPOSE_LLM_SUMMARY, SCHEMA_VERSION
from memtasks.domain.clock import HOUR_MS
from memtasks.domain.decay import SummaryMethod
from memtasks.domain.jobs import JobKind
from memtasks.domain.queues import QUEUES
from memtasks.services.admin import AnyJob, JobsAdmin, RequeueFilter, Table, job_view
from memtasks.services.archive import Archive, RestoreTarget
from memtasks.services.consolidation_report import ConsolidationReport
from memtasks.services.dry_run import unrecorded_dry_run
from memtasks.services.job_series import JobSeries, Key, Point
from memtasks.services.retrieval_failures import retrieval_report
from memtasks.services.runtime import Runtime
from memtasks.storage.archive_repo import Restored
from memtasks.storage.audit_repo import OperatorAction, OperatorActions
from memtasks.storage.consolidation_repo import ConsolidationRepo, RunRecord
from memtasks.storage.retrieval_repo import FailureSummary
from memtasks.storage.stats_repo import JobTable, KindStats, LaneStats, QueueStats, queue_stats
from memtasks.storage.sweeps_repo import SweepRecord, Sweeps
from memtasks.storage.tree_view_repo import Node, TreeLine, TreeShape, TreeViews

OVERVIEW_TTL_MS = 2_000
PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class KindRow:
    queue: str
    table: str
    kind: str
    ready: int
    running: int
    waiting_retry: int
    failed: int
    done_last_hour: int
    oldest_ready_age_ms: int | None


@dataclass(frozen=True, slots=True)
class Overview:
    now_ms: int
    rows: tuple[KindRow, ...]
    decay_by_state: dict[str, int]
    lanes: tuple[LaneStats, ...] = ()
    """Fair-share lanes with ready memory-tree jobs, the largest first."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "now_ms": self.now_ms,
            "kinds": [
                {
                    "queue": r.queue,
                    "table": r.table,
                    "kind": r.kind,
                    "ready": r.ready,
                    "running": r.running,
                    "waiting_retry": r.waiting_retry,
                    "failed": r.failed,
                    "done_last_hour": r.done_last_hour,
                    "oldest_ready_age_ms": r.oldest_ready_age_ms,
                }
                for r in self.rows
            ],
            "decay_by_state": self.decay_by_state,
            "lanes": [asdict(n) for n in self.lanes],
        }


@dataclass
class Console:
    runtime: Runtime
    read_only: bool
    queue_of_kind: Callable[[str], str]
    """The queue a memory-tree kind is routed to."""
    series: JobSeries = field(init=False)
    admin: JobsAdmin = field(init=False)
    audit: OperatorActions = field(init=False)
    archive: Archive = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _overview: Overview | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        clock = self.runtime.jobs.clock
        self.admin = JobsAdmin(self.runtime)
        self.series = JobSeries(self.runtime.engine, clock)
        self.audit = OperatorActions(self.runtime.engine, clock=clock)
        self.archive = Archive(self.runtime)

    # ── reads ────────────────────────────────────────────────────────────────

    def overview(self) -> Overview:
        now = self.admin.now()
        with self._lock:
            if self._overview is not None and now - self._overview.now_ms < OVERVIEW_TTL_MS:
                return self._overview
        stats = queue_stats(self.runtime.engine, now, open_only=True)
        self.series.refresh()
        overview = self._build(now, stats, self.series.finished_last_hour())
        with self._lock:
            self._overview = overview
        return overview

    def _build(self, now: int, stats: QueueStats, finished: dict[Key, int]) -> Overview:
        rows = []
        counted = {k.kind: k for k in stats.kinds}
        # A kind with no open work still shows while jobs of it finished in the last hour.
        recent = {kind for (table, kind) in finished if table is JobTable.MEM_TREE}
        for name in sorted(set(counted) | recent):
            k = counted.get(name) or KindStats(name, {}, None, 0, 0, {})
            rows.append(
                KindRow(
                    queue=self.queue_of_kind(k.kind),
                    table="mem-tree",
                    kind=k.kind,
                    ready=k.by_status.get("ready", 0),
                    running=k.by_status.get("running", 0),
                    waiting_retry=k.waiting_retry,
                    failed=k.by_status.get("failed", 0),
                    done_last_hour=finished.get((JobTable.MEM_TREE, k.kind), 0),
                    oldest_ready_age_ms=k.oldest_ready_age_ms,
                )
            )
        decay_done = sum(n for (table, _kind), n in finished.items() if table is JobTable.DECAY)
        decay = stats.decay_by_state
        if decay or decay_done:
            rows.append(
                KindRow(
                    queue="default / llm",
                    table="decay",
                    kind="decay",
                    ready=decay.get("pending", 0),
                    running=decay.get("in_progress", 0),
                    waiting_retry=0,
                    failed=decay.get("failed", 0),
                    done_last_hour=decay_done,
                    oldest_ready_age_ms=None,
                )
            )
        order = {q: i for i, q in enumerate(QUEUES)}
        rows.sort(key=lambda r: (order.get(r.queue, len(order)), r.kind))
        return Overview(now_ms=now, rows=tuple(rows), decay_by_state=dict(decay), lanes=stats.lanes)

    def points(self, queue: str | None) -> list[Point]:
        self.series.refresh()

        def keep(key: Key) -> bool:
            table, kind = key
            if queue is None:
                return True
            if table is JobTable.DECAY:
                return queue in {"default", "llm"}
            return self.queue_of_kind(kind) == queue

        return self.series.points(keep)

    def kinds_of_queue(self, queue: str) -> list[str]:
        return [k.value for k in JobKind if self.queue_of_kind(k.value) == queue]

    def job(self, job_id: str) -> tuple[dict[str, Any], list[OperatorAction]] | None:
        """One job (with ``followups``: the jobs its handler enqueued) and the actions taken on it."""
        found = self.admin.show(job_id)
        if found is None:
            return None
        view = job_view(found)
        view["followups"] = [
            {"id": j.id, "kind": j.kind, "status": j.status.value}
            for j in ([] if self.admin.is_decay(job_id) else self.runtime.jobs.admin.followups(job_id))
        ]
        return view, self.audit.recent(target=job_id)

    def page(self, table: Table, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        """A page of jobs (views) and the cursor of the next page (None: the last page)."""
        jobs: list[AnyJob] = self.admin.page(table, limit=PAGE_SIZE + 1, **filters)
        more = len(jobs) > PAGE_SIZE
        jobs = jobs[:PAGE_SIZE]
        return [job_view(j) for j in jobs], (jobs[-1].id if more and jobs else None)

    def awaiting_attestation(self, view: dict[str, Any]) -> dict[str, Any] | None:
        """For an LLM-summary decay job that waits for an operator: the document to sign (every
        field but ``signature``; sign its canonical bytes — sorted keys, no whitespace — with the
        operators' Ed25519 key) and the commands that hand it over. None for any other job."""
        if not (
            view.get("table") == "decay"
            and view.get("summary_method") == SummaryMethod.LLM_SUMMARY.value
            and view.get("status") == "pending"
            and view.get("attestation_required")
            and not view.get("attestation_attached")
        ):
            return None
        settings = self.runtime.settings
        now = self.admin.now()
        job_id = str(view["id"])
        return {
            "document": {
                "schema_version": SCHEMA_VERSION,
                "purpose": PURPOSE_LLM_SUMMARY,
                "job_id": job_id,
                "model": settings.llm_model or "<MEMTASKS_LLM_MODEL of the fleet>",
                "prompt_template_hash": settings.llm_prompt_template_hash
                or "<MEMTASKS_LLM_PROMPT_TEMPLATE_HASH of the fleet>",
                "operator_id": "<your operator id>",
                "issued_at_ms": now,
                "expires_at_ms": now + HOUR_MS,
            },
            "commands": [
                f"memtasks decay run {job_id} --attestation FILE",
                f"memtasks decay submit {job_id} --attestation FILE",
            ],
        }

    def sweeps(self) -> list[tuple[SweepRecord, int]]:
        """Every sweep with the start of its next slot."""
        return [(r, (r.last_slot + 1) * r.interval_ms) for r in Sweeps(self.runtime.engine).all()]

    def ledger(self, limit: int = 50) -> list[RunRecord]:
        return ConsolidationRepo(self.runtime.engine).runs(limit)

    def dry_run(self) -> ConsolidationReport:
        """What a consolidation would delete now, gate by gate; nothing written, no lock taken."""
        return unrecorded_dry_run(self.runtime, trigger="console")

    def failures(self, window_ms: int) -> list[FailureSummary]:
        return retrieval_report(self.runtime.engine, window_ms, self.admin.now)

    def trees(self, search: str | None = None) -> list[TreeLine]:
        return TreeViews(self.runtime.engine).trees(search=search)

    def tree(self, tree_id: str) -> TreeShape | None:
        return TreeViews(self.runtime.engine).shape(tree_id)

    def children(self, summary_id: str) -> list[Node]:
        return TreeViews(self.runtime.engine).children(summary_id)

    def path(self, node_id: str) -> list[Node]:
        return TreeViews(self.runtime.engine).path(node_id)

    # ── actions: each recorded ───────────────────────────────────────────────

    def _record(self, actor: str, action: str, target: str, affected: int) -> None:
        self.audit.record(actor=actor, via="web", action=action, target=target, affected=affected)

    def retry(self, job_id: str, actor: str) -> dict[str, Any]:
        job = self.admin.retry(job_id)
        self._record(actor, "retry", job_id, 1)
        return job_view(job)

    def cancel(self, job_id: str, actor: str) -> bool:
        cancelled = self.admin.cancel(job_id)
        self._record(actor, "cancel", job_id, 1 if cancelled else 0)
        return cancelled

    def count_failed(self, which: RequeueFilter) -> int:
        return self.admin.count_failed(which)

    def requeue(self, which: RequeueFilter, actor: str) -> int:
        moved = self.admin.requeue_failed(which)
        target = json.dumps(
            {"table": which.table.value, **which.arguments()}, sort_keys=True, separators=(",", ":")
        )
        self._record(actor, "requeue", target, moved)
        return moved

    def restore(self, target: RestoreTarget, actor: str) -> Restored:
        """Archived rows back (a run, a conversation, a job), recorded like every action."""
        return self.archive.restore(target, actor=actor, via="web")


__all__ = ["PAGE_SIZE", "Console", "KindRow", "Overview"]
