"""The built-in memory-tree handlers, one per job kind.

Every handler is idempotent: run twice (a duplicate delivery, a re-enqueued job), it
changes nothing the second time. Input that can never succeed (a malformed payload, an
item that does not exist) raises :class:`~memtasks.domain.errors.ValidationError`, which
fails the job as unrecoverable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind
from memtasks.domain.tree import (
    AppendBuffer,
    ExtractChunk,
    FlushStale,
    ReembedBackfill,
    Seal,
    SealDocument,
    append_chunk_job,
    append_summary_job,
    seal_job,
    should_force_seal,
)
from memtasks.services.mem_tree.context import Defer, Handler, HandlerContext

CODE_CHUNK_MISSING = "mem_tree.chunk.missing"
CODE_ITEM_MISSING = "mem_tree.item.missing"


def summary_id_for(tree_id: str, level: int, child_ids: Sequence[str]) -> str:
    """A summary's id follows from what it summarises: the same seal gives the same id."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (tree_id, str(level), *child_ids):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return f"sum:{digest.hexdigest()}"


def extract_chunk(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """Entities and keywords of a chunk, its embedding, then its append to the tree."""
    job = ExtractChunk.parse(payload)
    chunk = ctx.store.get_chunk(ctx.conn, job.chunk_id)
    if chunk is None:
        raise ValidationError(
            f"{CODE_CHUNK_MISSING}: chunk {job.chunk_id!r} does not exist", code=CODE_CHUNK_MISSING
        )
    if not chunk.extracted:
        found = ctx.models.extractor.extract(chunk.content)
        ctx.store.set_extraction(ctx.conn, chunk.id, found.entities, found.keywords)
    embedder = ctx.models.embedder
    if chunk.embedding_model != embedder.model:
        [vector] = embedder.embed([chunk.content])
        ctx.store.set_embeddings(ctx.conn, True, embedder.model, [(chunk.id, vector)])
    if ctx.store.placement(ctx.conn, chunk.tree_id, 0, chunk.id) == "free":
        ctx.enqueue(append_chunk_job(chunk.tree_id, chunk.id, chunk.source_id))
    return None


def append_buffer(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """Put an item into the buffer of its level; a full buffer gets a seal job."""
    job = AppendBuffer.parse(payload)
    placement = ctx.store.placement(ctx.conn, job.tree_id, job.level, job.item_id)
    if placement == "missing":
        raise ValidationError(
            f"{CODE_ITEM_MISSING}: no item {job.item_id!r} at level {job.level} of tree {job.tree_id!r}",
            code=CODE_ITEM_MISSING,
        )
    if placement != "free":
        return None  # a duplicate: the item is buffered or sealed already
    ctx.store.lock_buffer(ctx.conn, job.tree_id, job.level)
    if ctx.store.placement(ctx.conn, job.tree_id, job.level, job.item_id) != "free":
        ctx.store.drop_if_empty(ctx.conn, job.tree_id, job.level)
        return None
    if ctx.store.append(ctx.conn, job.tree_id, job.level, job.item_id) >= ctx.config.fanout:
        ctx.enqueue(seal_job(job.tree_id, job.level))
    return None


def _seal_group(
    ctx: HandlerContext, tree_id: str, level: int, ids: Sequence[str], doc_id: str | None
) -> None:
    texts = ctx.store.texts(ctx.conn, level, ids)
    content = ctx.models.summariser.summarise(level + 1, texts)
    embedder = ctx.models.embedder
    [vector] = embedder.embed([content])
    summary_id = summary_id_for(tree_id, level + 1, ids)
    ctx.store.seal_items(
        ctx.conn,
        summary_id=summary_id,
        tree_id=tree_id,
        level=level,
        child_ids=ids,
        content=content,
        embedding=vector,
        model=embedder.model,
        doc_id=doc_id,
    )
    ctx.enqueue(append_summary_job(tree_id, level + 1, summary_id))


def seal(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """Seal every full group of a buffer; with ``force``, the partial rest as well."""
    job = Seal.parse(payload)
    fanout = ctx.config.fanout
    ctx.store.lock_buffer(ctx.conn, job.tree_id, job.level)
    ids = [item.item_id for item in ctx.store.buffer_items(ctx.conn, job.tree_id, job.level)]
    full = len(ids) - len(ids) % fanout
    groups = [ids[start : start + fanout] for start in range(0, full, fanout)]
    rest = ids[full:]
    if job.force and should_force_seal(
        level=job.level,
        count=len(rest),
        higher_levels_hold_items=bool(groups)
        or ctx.store.higher_levels_hold_items(ctx.conn, job.tree_id, job.level),
    ):
        groups.append(rest)
    for group in groups:
        _seal_group(ctx, job.tree_id, job.level, group, None)
    ctx.store.refresh_buffer(ctx.conn, job.tree_id, job.level)
    return None


def flush_stale(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """Enqueue a forced seal for every buffer that has waited too long."""
    job = FlushStale.parse(payload)
    older_than = job.older_than_ms or ctx.config.stale_after_ms
    for buffer in ctx.store.stale_buffers(ctx.conn, ctx.now() - older_than):
        if should_force_seal(
            level=buffer.level, count=buffer.count, higher_levels_hold_items=buffer.higher_levels_hold_items
        ):
            ctx.enqueue(seal_job(buffer.tree_id, buffer.level, force=True))
    return None


def reembed_backfill(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """Embed a batch of chunks and summaries that the current model has not embedded."""
    job = ReembedBackfill.parse(payload)
    batch = job.batch or ctx.config.reembed_batch
    embedder = ctx.models.embedder
    more = False
    for level_zero in (True, False):
        rows = ctx.store.unembedded(ctx.conn, level_zero, embedder.model, batch)
        if rows:
            vectors = embedder.embed([content for _, content in rows])
            ctx.store.set_embeddings(
                ctx.conn, level_zero, embedder.model, zip([i for i, _ in rows], vectors, strict=True)
            )
        more = more or len(rows) == batch
    return Defer(ctx.now(), "more rows to embed") if more else None


def seal_document(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    """A finished document: seal its buffered chunks now instead of waiting for a full buffer."""
    job = SealDocument.parse(payload)
    fanout = ctx.config.fanout
    ctx.store.lock_buffer(ctx.conn, job.tree_id, 0)
    ids = [item.item_id for item in ctx.store.buffer_items(ctx.conn, job.tree_id, 0, doc_id=job.doc_id)]
    for start in range(0, len(ids), fanout):
        _seal_group(ctx, job.tree_id, 0, ids[start : start + fanout], job.doc_id)
    ctx.store.refresh_buffer(ctx.conn, job.tree_id, 0)
    return None


BUILT_IN: Mapping[JobKind, Handler] = {
    JobKind.EXTRACT_CHUNK: extract_chunk,
    JobKind.APPEND_BUFFER: append_buffer,
    JobKind.SEAL: seal,
    JobKind.FLUSH_STALE: flush_stale,
    JobKind.REEMBED_BACKFILL: reembed_backfill,
    JobKind.SEAL_DOCUMENT: seal_document,
}
