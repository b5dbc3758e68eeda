"""A producer from another codebase: it knows task names, not memtasks.

Usage: python _producer.py BROKER_URL COUNT PREFIX
"""

import sys

from celery import Celery

broker, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
app = Celery("agent", broker=broker)
app.conf.task_serializer = "json"
app.conf.task_queue_max_priority = 9  # memtasks' queues are priority queues (RabbitMQ checks)
with app.producer_or_acquire() as producer:
    for i in range(count):
        app.send_task(
            "memtasks.mem_tree.enqueue",
            kwargs={
                "kind": "seal",
                "payload": {"tree_id": f"{prefix}{i}", "level": 0},
                "dedupe_key": f"seal:{prefix}{i}:0",
            },
            queue="default",
            producer=producer,
        )
assert not [m for m in sys.modules if m.split(".")[0] == "memtasks"], "the producer imported memtasks"
print(f"sent {count}")
