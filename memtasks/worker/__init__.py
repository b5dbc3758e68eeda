"""The Celery side of memtasks: app factory (``memtasks.worker.app``), task names, routing, thin tasks.

``celery -A memtasks.worker.app worker`` / ``celery -A memtasks.worker.app beat``.
"""
