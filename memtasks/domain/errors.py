"""One exception root for memtasks. Each class docstring is its default message."""

from __future__ import annotations


class MemtasksError(Exception):
    """memtasks failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigurationError(MemtasksError):
    """The memtasks configuration is invalid."""


class ValidationError(MemtasksError):
    """The input is invalid."""

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnknownJobKind(ValidationError):
    """Unknown job kind."""

    def __init__(self, kind: str) -> None:
        # A kind longer than any real one is cut in the message (it may be megabytes).
        shown = repr(kind) if len(kind) <= 80 else repr(kind[:80]) + "…"
        super().__init__(f"unknown job kind {shown}", code="job.kind.unknown")
        self.kind = kind


class MalformedPayload(ValidationError):
    """The job payload is malformed."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed job payload: {detail}", code="job.payload.malformed")


class JobNotFound(ValidationError):
    """No such job."""


class IllegalTransition(MemtasksError):
    """A state transition that the state machine does not allow."""


class StorageError(MemtasksError):
    """The database could not be used."""


class DatabaseUnavailable(StorageError):
    """The database is not reachable."""


class CircuitOpen(StorageError):
    """The database circuit breaker is open."""


class LeaseLost(MemtasksError):
    """The job's lease was lost: another worker holds it now, or it was settled."""
