"""Ed25519 verification (and signing) of operator attestations.

:meth:`AttestationVerifier.verify` is the only way the decay runner accepts an attestation:
it parses the document strictly, checks the Ed25519 signature over the canonical bytes with
the operator's configured public key, then checks purpose, job id, the pinned model name
and prompt-template hash, and the validity window. Any failure is an
:class:`~memtasks.domain.attestation.AttestationError` with a stable ``code``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from memtasks.domain.attestation import (
    CODE_BAD_SIGNATURE,
    PURPOSE_LLM_SUMMARY,
    SCHEMA_VERSION,
    Attestation,
    AttestationClaims,
    AttestationError,
    check_claims,
    parse_attestation,
)
from memtasks.domain.clock import MINUTE_MS
from memtasks.domain.errors import ConfigurationError

RAW_PUBLIC_KEY_BYTES = 32


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (``-----BEGIN PUBLIC KEY-----``) or its 32 raw bytes."""
    try:
        raw = data.encode("ascii") if isinstance(data, str) else data
    except UnicodeEncodeError:
        raise ConfigurationError("an operator public key is PEM (ASCII) or 32 raw Ed25519 bytes") from None
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            key = load_pem_public_key(raw)
        elif len(raw) == RAW_PUBLIC_KEY_BYTES:
            key = Ed25519PublicKey.from_public_bytes(raw)
        else:
            raise ConfigurationError("an operator public key is PEM or 32 raw Ed25519 bytes")
    except ValueError as exc:
        raise ConfigurationError(f"cannot load the operator public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError("the operator public key is not an Ed25519 key")
    return key


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from PEM (operators' tooling)."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot load the operator private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("the operator private key is not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class AttestationVerifier:
    """The operator's public key and what an attestation must pin.

    ``model`` and ``prompt_template_hash`` are also what the runner hands to the summary
    backend, so an attestation can only authorise the model and prompt that will run.
    ``skew_ms`` tolerates an issuer clock slightly ahead of ours.
    """

    public_key: Ed25519PublicKey
    model: str
    prompt_template_hash: str
    skew_ms: int = 5 * MINUTE_MS

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise ConfigurationError("the operator public key must be an Ed25519 public key")
        if not self.model.strip() or not self.prompt_template_hash.strip():
            raise ConfigurationError("the pinned model name and prompt-template hash must be set")
        if self.skew_ms < 0:
            raise ConfigurationError("skew_ms must be ≥ 0")

    def verify(self, document: bytes | str | None, *, job_id: str, now_ms: int) -> Attestation:
        """The verified attestation for ``job_id`` at ``now_ms``; :class:`AttestationError` otherwise.

        Order: presence and form, schema version, signature, then the claims
        (purpose, job, model, prompt hash, time). Nothing is trusted before the signature holds.
        """
        attestation = parse_attestation(document)
        try:
            self.public_key.verify(attestation.signature, attestation.claims.canonical_bytes())
        except InvalidSignature:
            raise AttestationError(
                "the signature does not match the operator's public key", code=CODE_BAD_SIGNATURE
            ) from None
        check_claims(
            attestation.claims,
            job_id=job_id,
            model=self.model,
            prompt_template_hash=self.prompt_template_hash,
            now_ms=now_ms,
            skew_ms=self.skew_ms,
        )
        return attestation


def sign_attestation(
    private_key: Ed25519PrivateKey,
    *,
    job_id: str,
    model: str,
    prompt_template_hash: str,
    operator_id: str,
    issued_at_ms: int,
    expires_at_ms: int,
    purpose: str = PURPOSE_LLM_SUMMARY,
    schema_version: int = SCHEMA_VERSION,
) -> str:
    """A signed attestation document (JSON text) for one job: for tests and operators' tooling."""
    claims = AttestationClaims(
        job_id=job_id,
        model=model,
        prompt_template_hash=prompt_template_hash,
        operator_id=operator_id,
        issued_at_ms=issued_at_ms,
        expires_at_ms=expires_at_ms,
        purpose=purpose,
        schema_version=schema_version,
    )
    return Attestation(claims=claims, signature=private_key.sign(claims.canonical_bytes())).to_json()


__all__ = [
    "AttestationVerifier",
    "load_private_key",
    "load_public_key",
    "sign_attestation",
]
