"""A producer that has only the broker and memtasks' base install: it imports memtasks.client.

Usage: python _client_producer.py BROKER_URL COUNT PREFIX IDS_FILE
Writes the ids it was given, one a line, as ``kind id``; then one plain ``send_task`` by name
with no ``queue=`` (Celery's default queue), whose tree id is ``<PREFIX>-plain``.
"""

import sys

from celery import Celery

from memtasks.client import MemtasksClient

broker, count, prefix, ids_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ids = []
with MemtasksClient(broker) as client, client.batch():
    for i in range(count):
        if i % 3 == 0:
            ids.append(("seal", client.seal(f"{prefix}{i}", 0)))
        elif i % 3 == 1:
            ids.append(("reembed_backfill", client.enqueue("reembed_backfill", {"probe": f"{prefix}-ok"})))
        else:
            ids.append(("flush_stale", client.flush_stale(dedupe_key=f"flush:{prefix}{i}")))
with open(ids_file, "w") as out:
    out.writelines(f"{kind} {job_id}\n" for kind, job_id in ids)

plain = Celery("agent", broker=broker)  # Celery's defaults: no memtasks queue, no priorities
plain.conf.task_serializer = "json"
plain.send_task(
    "memtasks.mem_tree.enqueue",
    kwargs={"kind": "seal", "payload": {"tree_id": f"{prefix}-plain", "level": 0}},
)
plain.close()

heavy = {"sqlalchemy", "flower", "tornado", "psycopg", "psycopg2", "pydantic", "pydantic_settings", "alembic"}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert not loaded, f"the producer imported {loaded}"
print(f"sent {count}")
