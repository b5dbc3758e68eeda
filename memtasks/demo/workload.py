"""A realistic synthetic agent: conversations, memory-tree chunks, memories, retrieval failures."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert

from memtasks.domain.clock import DAY_MS, Clock
from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.domain.tree import extract_chunk_job, seal_document_job
from memtasks.producer import Producer
from memtasks.services.retrieval_failures import LoggerStats, RetrievalFailureLogger
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.memory_tables import conversations, messages, outcomes
from memtasks.storage.tree_repo import NewChunk, TreeStore

TOPICS = ("Paris", "Berlin", "the garden", "the quarterly report", "Alice", "Bob", "the migration", "tea")
VERBS = ("discussed", "planned", "remembered", "asked about", "summarised", "compared")


@dataclass(frozen=True, slots=True)
class Sizes:
    conversations: int = 40
    messages_per_conversation: int = 12
    senders: int = 4
    outcomes_per_sender: int = 140
    trees: int = 3
    chunks_per_tree: int = 300
    documents_per_tree: int = 6
    memory_clusters: int = 20
    retrieval_failures: int = 500

    @classmethod
    def quick(cls) -> Sizes:
        return cls(conversations=10, trees=2, chunks_per_tree=80, memory_clusters=5, retrieval_failures=100)


@dataclass(slots=True)
class Seeded:
    run_id: str
    started_at_ms: int
    chunks: int = 0
    old_messages: int = 0
    outcomes: int = 0
    decay_jobs: list[str] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)


def _sentence(rng: random.Random, i: int) -> str:
    who = rng.choice(("We", "Alice", "Bob", "The agent"))
    return f"{who} {rng.choice(VERBS)} {rng.choice(TOPICS)} (note {i})."


def seed_agent_data(engine: Engine, clock: Clock, run_id: str, sizes: Sizes, seeded: Seeded) -> None:
    """Conversations (old closed ones to prune, recent ones to count), outcomes per sender."""
    rng = random.Random(run_id)
    now = clock()
    old = now - 45 * DAY_MS
    conv_rows, message_rows = [], []
    for i in range(sizes.conversations):
        closed_and_old = i % 2 == 0
        at = old if closed_and_old else now - rng.randrange(0, 3_600_000)
        conv_id = f"{run_id}-conv{i}"
        conv_rows.append(
            {
                "id": conv_id,
                "channel": "chat",
                "sender_id": f"sender{i % sizes.senders}",
                "status": "closed" if closed_and_old else "active",
                "started_at_ms": at if closed_and_old else now,
                "updated_at_ms": at,
                "last_activity_ms": at,
            }
        )
        for j in range(sizes.messages_per_conversation):
            message_rows.append(
                {
                    "conversation_id": conv_id,
                    "role": "user" if j % 2 == 0 else "assistant",
                    "content": _sentence(rng, j),
                    "timestamp_ms": at + j,
                }
            )
        if closed_and_old:
            seeded.old_messages += sizes.messages_per_conversation
    outcome_rows = [
        {
            "timestamp_ms": now - k * 1000,
            "sender_id": f"{run_id}-sender{s}",
            "domain": "memory",
            "score": rng.choice((-1, 0, 1)),
            "lesson": _sentence(rng, k),
            "source": "demo",
        }
        for s in range(sizes.senders)
        for k in range(sizes.outcomes_per_sender)
    ]
    with engine.begin() as conn:
        conn.execute(insert(conversations), conv_rows)
        conn.execute(insert(messages), message_rows)
        conn.execute(insert(outcomes), outcome_rows)
    seeded.outcomes = len(outcome_rows)


def enqueue_tree_work(engine: Engine, producer: Producer, run_id: str, sizes: Sizes, seeded: Seeded) -> None:
    """Chunks written by the agent and their extract jobs, in one transaction; then publish."""
    rng = random.Random(f"{run_id}-tree")
    store = TreeStore(engine)
    ids: list[str | None] = []
    for t in range(sizes.trees):
        tree = f"{run_id}-tree{t}"
        chunks = [
            NewChunk(
                id=f"{run_id}-t{t}-c{i}",
                tree_id=tree,
                source_id=f"source{i % 5}",
                doc_id=f"{tree}-doc{i % sizes.documents_per_tree}",
                content=" ".join(_sentence(rng, i) for _ in range(3)),
            )
            for i in range(sizes.chunks_per_tree)
        ]
        with engine.begin() as conn:
            store.add_chunks(chunks, conn=conn)
            ids += producer.enqueue_many([extract_chunk_job(c.id) for c in chunks], conn=conn)
        seeded.chunks += len(chunks)
        seeded.documents += [(tree, f"{tree}-doc{d}") for d in range(sizes.documents_per_tree)]
    producer.publish(ids)


def enqueue_document_seals(producer: Producer, seeded: Seeded) -> None:
    for tree, doc in seeded.documents:
        producer.enqueue(seal_document_job(tree, doc))


def enqueue_decay_work(engine: Engine, producer: Producer, run_id: str, sizes: Sizes, seeded: Seeded) -> None:
    store = MemoryStore(engine)
    rng = random.Random(f"{run_id}-decay")
    for _ in range(sizes.memory_clusters):
        ids = [
            store.insert_memory(claim=_sentence(rng, i), confidence=0.4, authority="candidate")
            for i in range(3)
        ]
        spec = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, tuple(ids))
        seeded.decay_jobs.append(producer.enqueue_decay(spec, created_by=f"demo {run_id}"))


FAILED_RECALLS_PER_TURN = (1, 6)
"""Failed recalls of one agent turn (fewest, most): a turn recalls a few times, some miss."""
TURN_GAP_S = 0.01
"""The time between two turns of the synthetic agent. A real agent recalls between model calls
(hundreds of milliseconds apart); the demo compresses that a hundredfold, and still logs a
turn's failures far apart from the next turn's, as a running agent does."""


def log_retrieval_failures(logger: RetrievalFailureLogger, sizes: Sizes, run_id: str) -> LoggerStats:
    """The agent's failed recalls, logged as they happen: a few per turn, turn after turn,
    through the non-blocking logger; the logger is shut down (what it queued is sent) and its
    counters returned.

    Logged in one instant, 500 failures would overflow the logger's queue
    (``MEMTASKS_RETRIEVAL_FAILURE_CAPACITY``, 256) before its writer sent the first batches,
    and the overflow would be dropped: that is the logger protecting the recall path, not how
    an agent logs."""
    rng = random.Random(f"{run_id}-failures")
    low, high = FAILED_RECALLS_PER_TURN
    logged = 0
    while logged < sizes.retrieval_failures:
        for _ in range(min(rng.randint(low, high), sizes.retrieval_failures - logged)):
            logger.log(
                RetrievalFailure.new(
                    rng.choice(("no_hit", "low_confidence", "timeout")),
                    rng.choice(("vector", "graph", "keyword")),
                    f"what did we say about {rng.choice(TOPICS)}? ({logged})",
                    conversation_id=f"{run_id}-conv{logged % 10}",
                    latency_ms=rng.randrange(5, 900),
                    result_count=rng.randrange(0, 4),
                    top_score=round(rng.random(), 3),
                    confidence_threshold=0.6,
                )
            )
            logged += 1
        time.sleep(TURN_GAP_S)  # the agent's next turn
    logger.shutdown(timeout=30)
    return logger.stats()
