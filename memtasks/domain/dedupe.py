"""Dedupe-key builders, one per job kind. A key is held while its row is ready or running."""

from __future__ import annotations

from memtasks.domain.clock import to_datetime


def extract_key(chunk_id: str) -> str:
    return f"extract:{chunk_id}"


def append_source_key(source_id: str, node: str) -> str:
    return f"append:source:{source_id}:{node}"


def append_topic_key(tree_id: str, node: str) -> str:
    return f"append:topic:{tree_id}:{node}"


def seal_key(tree_id: str, level: int) -> str:
    return f"seal:{tree_id}:{level}"


def flush_stale_key(now_ms: int) -> str:
    """One key per 3-hour UTC block: ``flush_stale:2026-01-01-h0`` covers 00:00–02:59."""
    moment = to_datetime(now_ms)
    return f"flush_stale:{moment:%Y-%m-%d}-h{moment.hour // 3}"


def reembed_backfill_key(signature: str) -> str:
    return f"reembed_backfill:{signature}"


REEMBED_BACKFILL_MAX_ATTEMPTS = 3


def seal_document_key(doc_id: str, version: str | int | None = None) -> str:
    return f"seal_doc:{doc_id}" if version is None else f"seal_doc:{doc_id}@{version}"
