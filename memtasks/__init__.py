"""memtasks: background maintenance of an AI agent's long-term memory on Celery.

The durable job tables are the source of truth; a Celery message only carries a job id.
Layers, imports pointing down: ``domain`` → ``storage`` → ``services`` → ``worker`` →
``producer`` / ``cli``.
"""

__version__ = "0.1.0"
