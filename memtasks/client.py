"""A client for producers that have only the broker: enqueue memtasks jobs, know their ids.

::

    from memtasks.client import MemtasksClient

    client = MemtasksClient("redis://127.0.0.1:6379/0")    # or MEMTASKS_BROKER_URL
    job_id = client.extract_chunk("chunk-1")               # "job:0190…", known at once
    client.seal("tree-1", 0, delay_s=30)
    decay_id = client.decay("episode_compression", ["m1", "m2"], created_by="agent-7")

Each call checks its input here with the rules the worker applies
(:mod:`memtasks.services.intake`): bad input raises :class:`~memtasks.domain.errors.ValidationError`
(:class:`~memtasks.domain.errors.MalformedPayload` for a payload) naming the field, and
nothing is sent. The client chooses the job's id (the forms storage uses: ``job:<uuid>``,
``dj_<32 hex>``) and sends ``memtasks.mem_tree.enqueue`` / ``memtasks.decay.enqueue`` with
it to the ``default`` queue at the kind's priority, in the broker's own order (Redis: 0
first; RabbitMQ: 9 first); the worker stores the row under that id — the same message
delivered twice stores it once — and runs it. A broker that cannot be reached raises
:class:`BrokerUnreachable` naming the broker (its password masked).

With ``status_url`` (the ``memtasks metrics`` server, e.g. ``http://host:9108``),
:meth:`MemtasksClient.status` and :meth:`MemtasksClient.wait` follow the jobs through
``GET /jobs/<id>``: no database access.

Importing this module reads no environment and opens no connection, and it needs only
``celery``, ``kombu`` and ``redis`` (the base install): neither SQLAlchemy, pydantic, a
database driver nor Flower is imported, now or when jobs are sent.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from memtasks.domain import dedupe
from memtasks.domain.decay import DecayState, SummaryMethod
from memtasks.domain.errors import ConfigurationError, MemtasksError
from memtasks.domain.ids import new_decay_job_id, new_mem_tree_job_id
from memtasks.domain.jobs import JobKind, JobStatus, NewJob
from memtasks.domain.masking import mask_urls_in
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.domain.urls import check_broker_url
from memtasks.services import intake
from memtasks.worker import names
from memtasks.worker.conf import publisher_app
from memtasks.worker.routing import decay_priority, message_priority

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
BROKER_ENV = "MEMTASKS_BROKER_URL"
TERMINAL = frozenset(
    {*(s.value for s in JobStatus if s.terminal), *(s.value for s in DecayState if s.terminal)}
)
"""Statuses after which a job does not change (mem-tree: done, failed, cancelled; decay:
completed, failed, cancelled)."""


class BrokerUnreachable(MemtasksError, ConnectionError):
    """The broker cannot be reached."""


class StatusUnavailable(MemtasksError, ConnectionError):
    """The job status endpoint cannot be reached."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MemtasksClient:
    """Enqueue memtasks jobs through the broker alone (see the module's docstring).

    ``broker_url``: default ``MEMTASKS_BROKER_URL`` (read when the client is made), else
    ``redis://127.0.0.1:6379/0``. ``app``: a Celery app of yours to publish with (it must
    declare memtasks' queues as :func:`memtasks.worker.conf.publisher_conf` does); by default
    the client makes one on first use. ``status_url``: the base URL of the job status
    endpoint, for :meth:`status` and :meth:`wait`.
    """

    def __init__(
        self, broker_url: str | None = None, *, status_url: str | None = None, app: Celery | None = None
    ) -> None:
        url = broker_url or os.environ.get(BROKER_ENV) or DEFAULT_BROKER_URL
        try:
            self.broker_url = check_broker_url(url)
        except ValueError as exc:
            raise ConfigurationError(f"broker URL {mask_urls_in(url)} {exc}") from None
        self.status_url = status_url.rstrip("/") if status_url else None
        self._app = app
        self._own_app = app is None
        self._producer: Any = None

    # ── the Celery side ──────────────────────────────────────────────────────

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = publisher_app(self.broker_url)
        return self._app

    def close(self) -> None:
        """Close the broker connections of the app the client made (not of an app it was given)."""
        if self._own_app and self._app is not None:
            self._app.close()
            self._app = None

    def __enter__(self) -> MemtasksClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[MemtasksClient]:
        """Send the calls made inside through one broker connection (a burst of enqueues).
        Not to be shared between threads while it is open."""
        with self._broker_errors(), self.app.producer_or_acquire() as producer:
            self._producer = producer
            try:
                yield self
            finally:
                self._producer = None

    @contextmanager
    def _broker_errors(self) -> Iterator[None]:
        try:
            yield
        except (KombuOperationalError, OSError) as exc:
            raise BrokerUnreachable(
                f"cannot reach the broker at {mask_urls_in(self.broker_url)}: {mask_urls_in(str(exc))}"
            ) from None

    def _send(self, task: str, kwargs: dict[str, Any], *, priority: int, shadow: str) -> None:
        with self._broker_errors():
            self.app.send_task(
                task,
                kwargs=kwargs,
                queue=names.DEFAULT,
                priority=priority,
                shadow=shadow,
                producer=self._producer,
            )

    # ── mem-tree jobs ────────────────────────────────────────────────────────

    def enqueue(
        self,
        kind: JobKind | str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
        fair_key: str | None = None,
    ) -> str:
        """Enqueue a mem-tree job of ``kind``; its id. ``dedupe_key`` None: no key (the typed
        calls below use each kind's standard key instead). ``fair_key``: the job's fair-share
        lane (its agent or tenant); None: the payload's ``agent_id`` or ``tenant_id``."""
        job = intake.mem_tree_job_from_wire(
            str(kind), payload, dedupe_key, delay_s, max_attempts, now_ms=_now_ms(), fair_key=fair_key
        )
        job_id = new_mem_tree_job_id()
        kwargs: dict[str, Any] = {
            "kind": job.kind.value,
            "payload": json.loads(job.payload_json),  # what was checked, as the worker reads it
            "job_id": job_id,
        }
        for name, value in (
            ("dedupe_key", job.dedupe_key),
            ("delay_s", delay_s),
            ("max_attempts", max_attempts),
            ("fair_key", job.fair_key),
        ):
            if value is not None:
                kwargs[name] = value
        self._send(
            names.MEM_TREE_ENQUEUE,
            kwargs,
            priority=message_priority(job.kind, self.broker_url),
            shadow=names.shadow(names.MEM_TREE_ENQUEUE, job.kind.value),
        )
        return job_id

    def enqueue_job(self, job: NewJob, *, delay_s: float | None = None) -> str:
        """Enqueue a job made by a builder of :mod:`memtasks.domain.tree`; its id."""
        return self.enqueue(
            job.kind,
            json.loads(job.payload_json),
            dedupe_key=job.dedupe_key,
            delay_s=delay_s,
            max_attempts=job.max_attempts,
            fair_key=job.fair_key,
        )

    def _typed(
        self,
        kind: JobKind,
        payload: dict[str, Any],
        standard_key: str | None,
        dedupe_key: str | None,
        delay_s: float | None,
        max_attempts: int | None,
    ) -> str:
        key = standard_key if dedupe_key is None else dedupe_key
        return self.enqueue(kind, payload, dedupe_key=key, delay_s=delay_s, max_attempts=max_attempts)

    def extract_chunk(
        self,
        chunk_id: str,
        *,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Extract a chunk (``bulk``). Standard dedupe key: ``extract:<chunk_id>``."""
        key = dedupe.extract_key(str(chunk_id))
        return self._typed(
            JobKind.EXTRACT_CHUNK, {"chunk_id": chunk_id}, key, dedupe_key, delay_s, max_attempts
        )

    def append_buffer(
        self,
        tree_id: str,
        level: int,
        item_id: str,
        *,
        source_id: str | None = None,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Append an item to the buffer of ``level`` in ``tree_id`` (``default``). Standard
        dedupe key: per source and item with ``source_id``, else per tree and item."""
        payload = {"tree_id": tree_id, "level": level, "item_id": item_id}
        key = (
            dedupe.append_source_key(str(source_id), str(item_id))
            if source_id is not None
            else dedupe.append_topic_key(str(tree_id), str(item_id))
        )
        return self._typed(JobKind.APPEND_BUFFER, payload, key, dedupe_key, delay_s, max_attempts)

    def seal(
        self,
        tree_id: str,
        level: int,
        *,
        force: bool = False,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Seal the buffer of ``level`` (``critical``); ``force`` seals a partial buffer.
        Standard dedupe key: ``seal:<tree_id>:<level>``."""
        payload: dict[str, Any] = {"tree_id": tree_id, "level": level}
        if force:
            payload["force"] = force
        key = dedupe.seal_key(str(tree_id), level)
        return self._typed(JobKind.SEAL, payload, key, dedupe_key, delay_s, max_attempts)

    def flush_stale(
        self,
        *,
        older_than_ms: int | None = None,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Seal every buffer that waited too long (``critical``). Standard dedupe key: one per
        3-hour UTC block."""
        payload = {} if older_than_ms is None else {"older_than_ms": older_than_ms}
        key = dedupe.flush_stale_key(_now_ms())
        return self._typed(JobKind.FLUSH_STALE, payload, key, dedupe_key, delay_s, max_attempts)

    def reembed_backfill(
        self,
        model: str,
        *,
        batch: int | None = None,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Re-embed items made with another model (``bulk``). Standard dedupe key:
        ``reembed_backfill:<model>``."""
        payload: dict[str, Any] = {"model": model}
        if batch is not None:
            payload["batch"] = batch
        key = dedupe.reembed_backfill_key(str(model))
        return self._typed(JobKind.REEMBED_BACKFILL, payload, key, dedupe_key, delay_s, max_attempts)

    def seal_document(
        self,
        tree_id: str,
        doc_id: str,
        version: str | None = None,
        *,
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> str:
        """Seal a document's tree (``bulk``). Standard dedupe key: ``seal_doc:<doc_id>[@version]``."""
        payload = {"tree_id": tree_id, "doc_id": doc_id}
        if version is not None:
            payload["version"] = version
        key = dedupe.seal_document_key(str(doc_id), version)
        return self._typed(JobKind.SEAL_DOCUMENT, payload, key, dedupe_key, delay_s, max_attempts)

    # ── decay jobs ───────────────────────────────────────────────────────────

    def decay(
        self,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = SummaryMethod.DETERMINISTIC_CONCATENATE.value,
        *,
        delay_s: float | None = None,
    ) -> str:
        """Enqueue a decay job; its id (``dj_…``). An LLM summary (``method="llm_summary"``)
        waits for an operator's attestation, as with every producer."""
        request = intake.decay_job_from_wire(kind, source_ids, created_by, method, delay_s, now_ms=_now_ms())
        job_id = new_decay_job_id()
        spec = request.spec
        kwargs: dict[str, Any] = {
            "kind": spec.kind.value,
            "source_ids": list(spec.source_ids),
            "created_by": request.created_by,
            "method": spec.method.value,
            "job_id": job_id,
        }
        if delay_s is not None:
            kwargs["delay_s"] = delay_s
        self._send(
            names.DECAY_ENQUEUE,
            kwargs,
            priority=decay_priority(spec.kind.value, self.broker_url),
            shadow=names.shadow(names.DECAY_ENQUEUE, spec.kind.value),
        )
        return job_id

    # ── retrieval failures ───────────────────────────────────────────────────

    def record_retrieval_failures(self, records: Sequence[RetrievalFailure]) -> int:
        """Send retrieval failures for the worker to write, checked as the worker checks them,
        in messages of at most the size it accepts; how many messages were sent."""
        batches = intake.wire_batches(records)
        for wires in batches:
            with self._broker_errors():
                self.app.send_task(
                    names.RECORD_RETRIEVAL_FAILURES,
                    args=[wires],
                    queue=names.DEFAULT,
                    producer=self._producer,
                )
        return len(batches)

    # ── following jobs (the status endpoint) ─────────────────────────────────

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job as the status endpoint shows it (``id``, ``table``, ``kind``, ``status``,
        ``attempts``, ``error`` …), or None while no job has that id (not stored yet, or never)."""
        if self.status_url is None:
            raise StatusUnavailable("no status_url: pass the URL of the `memtasks metrics` server")
        url = f"{self.status_url}/jobs/{urllib.parse.quote(job_id, safe='')}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (http(s) URL of the caller's)
                found: dict[str, Any] = json.loads(reply.read())
                return found
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise StatusUnavailable(f"{mask_urls_in(url)} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise StatusUnavailable(f"cannot reach {mask_urls_in(url)}: {exc}") from None

    def wait(
        self, job_ids: Iterable[str], timeout: float = 60.0, *, poll_s: float = 0.5
    ) -> dict[str, dict[str, Any]]:
        """Poll :meth:`status` until every job is terminal; each job's last status.
        :class:`TimeoutError` naming the jobs still open after ``timeout`` seconds."""
        pending = list(dict.fromkeys(job_ids))
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            for job_id in list(pending):
                found = self.status(job_id)
                if found is not None:
                    seen[job_id] = found
                    if found.get("status") in TERMINAL:
                        pending.remove(job_id)
            if not pending:
                return seen
            if time.monotonic() >= deadline:
                shown = ", ".join(
                    f"{i} ({seen[i].get('status') if i in seen else 'not stored yet'})" for i in pending[:5]
                )
                more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
                raise TimeoutError(f"after {timeout:g} s, {len(pending)} jobs still open: {shown}{more}")
            time.sleep(poll_s)


__all__ = ["DEFAULT_BROKER_URL", "BrokerUnreachable", "MemtasksClient", "StatusUnavailable"]
