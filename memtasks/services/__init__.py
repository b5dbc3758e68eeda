"""Use cases over the storage layer. No Celery here."""
