"""The operator attestation that lets one LLM-summary decay job run.

Stdlib only: the document, its canonical bytes, strict parsing and the checks of its claims
against what the caller pinned. The Ed25519 signature itself is checked in
:mod:`memtasks.services.attestation`.

A document is a JSON object with exactly these keys::

    {"schema_version": 1, "purpose": "decay.llm_summary", "job_id": "dj_…",
     "model": "…", "prompt_template_hash": "sha256:…", "operator_id": "…",
     "issued_at_ms": 1767225600000, "expires_at_ms": 1767229200000,
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

The signature covers the canonical bytes: every key but ``signature``, as JSON with sorted
keys, no whitespace (``,`` and ``:``), non-ASCII characters as UTF-8. Every rejection is an
:class:`AttestationError` (a :class:`ValidationError`) with a stable ``code``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from memtasks.domain.errors import ValidationError
from memtasks.domain.text import unstorable

SCHEMA_VERSION = 1
PURPOSE_LLM_SUMMARY = "decay.llm_summary"
MAX_DOCUMENT_BYTES = 16 * 1024
MAX_FIELD_CHARS = 1024
SIGNATURE_BYTES = 64

CODE_REQUIRED = "decay.llm_summary.requires_operator_attestation"
CODE_MALFORMED = "decay.attestation.malformed"
CODE_SCHEMA_VERSION = "decay.attestation.schema_version"
CODE_PURPOSE = "decay.attestation.purpose"
CODE_JOB_MISMATCH = "decay.attestation.job_mismatch"
CODE_MODEL_MISMATCH = "decay.attestation.model_mismatch"
CODE_PROMPT_HASH_MISMATCH = "decay.attestation.prompt_hash_mismatch"
CODE_EXPIRED = "decay.attestation.expired"
CODE_NOT_YET_VALID = "decay.attestation.not_yet_valid"
CODE_BAD_SIGNATURE = "decay.attestation.bad_signature"
CODE_NO_OPERATOR_KEY = "decay.attestation.no_operator_key"

_STRING_FIELDS = ("purpose", "job_id", "model", "prompt_template_hash", "operator_id")
_INT_FIELDS = ("schema_version", "issued_at_ms", "expires_at_ms")
FIELDS: frozenset[str] = frozenset((*_STRING_FIELDS, *_INT_FIELDS, "signature"))


class AttestationError(ValidationError):
    """The operator attestation is missing or does not hold."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(f"{code}: {message}", code=code)


def prompt_template_hash(template: str) -> str:
    """The pinned form of a prompt template: ``sha256:`` + the hex digest of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(template.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AttestationClaims:
    """Everything an operator signs: the attestation without its signature."""

    job_id: str
    model: str
    prompt_template_hash: str
    operator_id: str
    issued_at_ms: int
    expires_at_ms: int
    purpose: str = PURPOSE_LLM_SUMMARY
    schema_version: int = SCHEMA_VERSION

    def canonical_bytes(self) -> bytes:
        """Sorted-key compact JSON of every claim, UTF-8: the bytes the signature covers."""
        return canonical_bytes(asdict(self))


@dataclass(frozen=True, slots=True)
class Attestation:
    """A parsed, well-formed attestation; not yet verified."""

    claims: AttestationClaims
    signature: bytes

    def to_json(self) -> str:
        """The document form (claims plus the base64 signature), keys sorted."""
        document: dict[str, Any] = asdict(self.claims)
        document["signature"] = base64.b64encode(self.signature).decode("ascii")
        return json.dumps(document, sort_keys=True, ensure_ascii=False)


def canonical_bytes(claims: Mapping[str, Any]) -> bytes:
    """Sorted-key compact JSON of ``claims`` without ``signature``, encoded as UTF-8."""
    unsigned = {k: v for k, v in claims.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_attestation(document: bytes | str | None) -> Attestation:
    """Parse an attestation document strictly.

    None or blank → ``decay.llm_summary.requires_operator_attestation``; not UTF-8 JSON,
    not an object, duplicate/missing/unknown keys, wrong types, a bad signature encoding or
    ``expires_at_ms <= issued_at_ms`` → ``decay.attestation.malformed``; another schema
    version → ``decay.attestation.schema_version``.
    """
    if document is None:
        raise AttestationError("an LLM summary runs only with an operator attestation", code=CODE_REQUIRED)
    if not isinstance(document, str | bytes | bytearray):
        raise _malformed(f"document must be text or bytes, not {type(document).__name__}")
    if not document.strip():
        raise AttestationError("an LLM summary runs only with an operator attestation", code=CODE_REQUIRED)
    try:
        raw = document.encode("utf-8") if isinstance(document, str) else bytes(document)
    except UnicodeEncodeError:
        raise _malformed("document is not UTF-8") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _malformed(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        parsed = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise _malformed("document is not UTF-8") from None
    except ValueError as exc:
        raise _malformed(f"document is not JSON: {exc}") from None
    except RecursionError:
        raise _malformed("document is nested too deeply") from None
    if not isinstance(parsed, dict):
        raise _malformed("document is not a JSON object")
    version = parsed.get("schema_version")
    if _is_int(version) and version != SCHEMA_VERSION:
        raise AttestationError(
            f"schema version {version} is not supported (expected {SCHEMA_VERSION})", code=CODE_SCHEMA_VERSION
        )
    keys = set(parsed)
    if keys != FIELDS:
        detail = []
        if FIELDS - keys:
            detail.append("missing " + ", ".join(sorted(FIELDS - keys)))
        if keys - FIELDS:
            detail.append("unknown " + ", ".join(sorted(keys - FIELDS)))
        raise _malformed("; ".join(detail))
    for name in _INT_FIELDS:
        if not _is_int(parsed[name]):
            raise _malformed(f"{name} must be an integer")
    for name in _STRING_FIELDS:
        value = parsed[name]
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD_CHARS:
            raise _malformed(f"{name} must be a non-empty string of at most {MAX_FIELD_CHARS} characters")
        problem = unstorable(value)
        if problem is not None:  # a lone surrogate has no canonical (UTF-8) bytes to sign
            raise _malformed(f"{name} {problem}")
    if parsed["expires_at_ms"] <= parsed["issued_at_ms"]:
        raise _malformed("expires_at_ms must be after issued_at_ms")
    claims = AttestationClaims(**{k: v for k, v in parsed.items() if k != "signature"})
    return Attestation(claims=claims, signature=_decode_signature(parsed["signature"]))


def check_claims(
    claims: AttestationClaims,
    *,
    job_id: str,
    model: str,
    prompt_template_hash: str,
    now_ms: int,
    skew_ms: int = 0,
) -> None:
    """Check the claims of a signature-verified attestation against the caller's pins.

    In order: purpose, job id, model name, prompt-template hash, then validity time
    (``now >= expires_at_ms`` → expired; ``now + skew_ms < issued_at_ms`` → not yet valid).
    """
    if claims.purpose != PURPOSE_LLM_SUMMARY:
        raise AttestationError(
            f"purpose {claims.purpose!r} is not {PURPOSE_LLM_SUMMARY!r}", code=CODE_PURPOSE
        )
    if claims.job_id != job_id:
        raise AttestationError(
            f"attestation is for job {claims.job_id}, not {job_id}", code=CODE_JOB_MISMATCH
        )
    if claims.model != model:
        raise AttestationError(
            f"attestation names model {claims.model!r}, the pinned model is {model!r}",
            code=CODE_MODEL_MISMATCH,
        )
    if claims.prompt_template_hash != prompt_template_hash:
        raise AttestationError(
            "attestation's prompt-template hash is not the pinned one", code=CODE_PROMPT_HASH_MISMATCH
        )
    if now_ms >= claims.expires_at_ms:
        raise AttestationError(f"attestation expired at {claims.expires_at_ms} ms", code=CODE_EXPIRED)
    if now_ms + skew_ms < claims.issued_at_ms:
        raise AttestationError(
            f"attestation is issued at {claims.issued_at_ms} ms, in the future", code=CODE_NOT_YET_VALID
        )


def _malformed(detail: str) -> AttestationError:
    return AttestationError(f"malformed attestation: {detail}", code=CODE_MALFORMED)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _malformed(f"duplicate key {key!r}")
        result[key] = value
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_signature(value: object) -> bytes:
    if not isinstance(value, str):
        raise _malformed("signature must be a base64 string")
    try:
        signature = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _malformed("signature is not valid base64") from None
    if len(signature) != SIGNATURE_BYTES:
        raise _malformed(f"signature must be {SIGNATURE_BYTES} bytes, not {len(signature)}")
    if base64.b64encode(signature).decode("ascii") != value:
        # Unused padding bits set: another text for the same bytes. One document, one form.
        raise _malformed("signature is not canonical base64")
    return signature
