"""A summary backend for the attestation tests (``MEMTASKS_SUMMARY_BACKEND``): it answers every
request and records it, so a test sees whether an LLM summary was ever asked for."""

from __future__ import annotations

from collections.abc import Sequence

from memtasks.domain.compression import Source

CALLS: list[tuple[tuple[str, ...], str, str]] = []


class RecordingBackend:
    def summarise(self, sources: Sequence[Source], model: str, prompt_template_hash: str) -> str:
        CALLS.append((tuple(s.id for s in sources), model, prompt_template_hash))
        return "LLM summary of " + ", ".join(s.id for s in sources)


def summary_backend() -> RecordingBackend:
    return RecordingBackend()
