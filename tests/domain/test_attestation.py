"""Operator attestations: canonical bytes, strict parsing, Ed25519 verification, claim checks."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from memtasks.domain.attestation import (
    AttestationClaims,
    AttestationError,
    canonical_bytes,
    parse_attestation,
    prompt_template_hash,
)
from memtasks.domain.clock import HOUR_MS, MINUTE_MS
from memtasks.domain.errors import ConfigurationError
from memtasks.services.attestation import (
    AttestationVerifier,
    load_private_key,
    load_public_key,
    sign_attestation,
)

pytestmark = pytest.mark.unit

NOW = 1_767_225_600_000
MODEL = "summariser-7b"
PROMPT = prompt_template_hash("Summarise these memories:\n{sources}")
KEY = Ed25519PrivateKey.generate()
VERIFIER = AttestationVerifier(KEY.public_key(), MODEL, PROMPT)


def signed(key: Ed25519PrivateKey = KEY, **overrides: object) -> str:
    fields: dict[str, object] = {
        "job_id": "dj_1",
        "model": MODEL,
        "prompt_template_hash": PROMPT,
        "operator_id": "op:alice",
        "issued_at_ms": NOW - MINUTE_MS,
        "expires_at_ms": NOW + HOUR_MS,
    }
    fields.update(overrides)
    return sign_attestation(key, **fields)  # type: ignore[arg-type]


def edited(document: str, **changes: object) -> str:
    data = json.loads(document)
    data.update(changes)
    return json.dumps(data)


def test_a_valid_attestation_verifies() -> None:
    attestation = VERIFIER.verify(signed(), job_id="dj_1", now_ms=NOW)
    assert attestation.claims.operator_id == "op:alice"
    assert attestation.claims.purpose == "decay.llm_summary"
    assert VERIFIER.verify(signed().encode(), job_id="dj_1", now_ms=NOW) == attestation, "bytes too"


def test_canonical_bytes_are_sorted_compact_json_without_the_signature() -> None:
    claims = AttestationClaims("dj_1", "m", "sha256:x", "op:é", 1, 2)
    expected = (
        '{"expires_at_ms":2,"issued_at_ms":1,"job_id":"dj_1","model":"m","operator_id":"op:é",'
        '"prompt_template_hash":"sha256:x","purpose":"decay.llm_summary","schema_version":1}'
    ).encode()
    assert claims.canonical_bytes() == expected
    assert canonical_bytes({"b": 1, "a": 2, "signature": "zz"}) == b'{"a":2,"b":1}'


def test_whitespace_and_key_order_of_the_document_do_not_matter() -> None:
    pretty = json.dumps(dict(reversed(list(json.loads(signed()).items()))), indent=4)
    assert VERIFIER.verify(pretty, job_id="dj_1", now_ms=NOW).claims.job_id == "dj_1"


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (signed(Ed25519PrivateKey.generate()), "decay.attestation.bad_signature"),
        (edited(signed(), model="other-model"), "decay.attestation.bad_signature"),
        (edited(signed(), operator_id="op:mallory"), "decay.attestation.bad_signature"),
        (signed(purpose="decay.other"), "decay.attestation.purpose"),
        (signed(job_id="dj_2"), "decay.attestation.job_mismatch"),
        (signed(model="other-model"), "decay.attestation.model_mismatch"),
        (
            signed(prompt_template_hash=prompt_template_hash("other")),
            "decay.attestation.prompt_hash_mismatch",
        ),
        (signed(issued_at_ms=NOW - 2 * HOUR_MS, expires_at_ms=NOW), "decay.attestation.expired"),
        (
            signed(issued_at_ms=NOW + HOUR_MS, expires_at_ms=NOW + 2 * HOUR_MS),
            "decay.attestation.not_yet_valid",
        ),
        (signed(schema_version=2), "decay.attestation.schema_version"),
        (None, "decay.llm_summary.requires_operator_attestation"),
        ("  ", "decay.llm_summary.requires_operator_attestation"),
    ],
    ids=[
        "wrong-key",
        "altered-model",
        "altered-operator",
        "purpose",
        "other-job",
        "pinned-model",
        "pinned-prompt",
        "expired",
        "future",
        "schema",
        "none",
        "blank",
    ],
)
def test_rejections_carry_their_code(document: str | None, code: str) -> None:
    with pytest.raises(AttestationError) as info:
        VERIFIER.verify(document, job_id="dj_1", now_ms=NOW)
    assert info.value.code == code
    assert code in str(info.value)


def test_small_clock_skew_is_tolerated() -> None:
    early = signed(issued_at_ms=NOW + MINUTE_MS)
    assert VERIFIER.verify(early, job_id="dj_1", now_ms=NOW).claims.issued_at_ms == NOW + MINUTE_MS


def _good() -> dict[str, object]:
    return dict(json.loads(signed()))


def _without(key: str) -> str:
    data = _good()
    del data[key]
    return json.dumps(data)


@pytest.mark.parametrize(
    "document",
    [
        "{not json",
        b"\xff\xfe{}",
        "[1, 2]",
        '"a string"',
        "[" * 5000 + "]" * 5000,
        _without("model"),
        json.dumps(_good() | {"extra": 1}),
        signed()[:-1] + ', "model": "x"}',
        json.dumps(_good() | {"issued_at_ms": True}),
        json.dumps(_good() | {"expires_at_ms": "soon"}),
        json.dumps(_good() | {"job_id": ""}),
        json.dumps(_good() | {"model": 7}),
        json.dumps(_good() | {"signature": "not base64!"}),
        json.dumps(_good() | {"signature": base64.b64encode(b"short").decode()}),
        json.dumps(_good() | {"signature": 5}),
        json.dumps(_good() | {"expires_at_ms": NOW - 10 * HOUR_MS}),
        json.dumps(_good() | {"operator_id": "x" * 20_000}),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "string",
        "deep",
        "missing-key",
        "unknown-key",
        "duplicate-key",
        "bool-int",
        "str-int",
        "empty-str",
        "int-str",
        "bad-base64",
        "short-signature",
        "int-signature",
        "expires-before-issued",
        "too-big",
    ],
)
def test_malformed_documents_are_refused(document: str | bytes) -> None:
    with pytest.raises(AttestationError) as info:
        parse_attestation(document)
    assert info.value.code == "decay.attestation.malformed"


def test_round_trip_through_to_json() -> None:
    attestation = parse_attestation(signed())
    assert parse_attestation(attestation.to_json()) == attestation


def test_keys_load_from_pem_and_raw_bytes() -> None:
    public = KEY.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    for data in (pem, pem.decode(), raw):
        verifier = AttestationVerifier(load_public_key(data), MODEL, PROMPT)
        assert verifier.verify(signed(), job_id="dj_1", now_ms=NOW).claims.model == MODEL
    with pytest.raises(ConfigurationError):
        load_public_key(b"too short")
    with pytest.raises(ConfigurationError):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    private_pem = KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    reloaded = load_private_key(private_pem)
    assert VERIFIER.verify(signed(reloaded), job_id="dj_1", now_ms=NOW).claims.job_id == "dj_1"


def test_verifier_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        AttestationVerifier(KEY.public_key(), " ", PROMPT)
    with pytest.raises(ConfigurationError):
        AttestationVerifier(KEY.public_key(), MODEL, PROMPT, skew_ms=-1)
    with pytest.raises(ConfigurationError):
        AttestationVerifier(KEY, MODEL, PROMPT)  # type: ignore[arg-type]
