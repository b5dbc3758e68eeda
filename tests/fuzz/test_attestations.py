"""Fuzzed operator attestations: random bytes, broken JSON, wrong fields and types, bad
base64, truncated signatures, other keys. Every one is refused with a stable reason code;
only a document signed by the operator's key for exactly this job, model, prompt hash and
time is accepted."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain import attestation as a
from memtasks.domain.attestation import AttestationError, parse_attestation
from memtasks.domain.errors import ConfigurationError
from memtasks.services.attestation import AttestationVerifier, load_public_key, sign_attestation
from tests.fuzz.budget import attempt, fuzz
from tests.fuzz.strategies import json_values, storable_char, surrogate

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
MODEL = "summariser-v1"
PROMPT = a.prompt_template_hash("Summarise: {sources}")
JOB = "dj_0123456789abcdef"
ISSUED = 1_767_225_600_000
EXPIRES = ISSUED + 3_600_000
NOW = ISSUED + 60_000
VERIFIER = AttestationVerifier(OPERATOR.public_key(), MODEL, PROMPT)
CODES = {
    a.CODE_REQUIRED,
    a.CODE_MALFORMED,
    a.CODE_SCHEMA_VERSION,
    a.CODE_PURPOSE,
    a.CODE_JOB_MISMATCH,
    a.CODE_MODEL_MISMATCH,
    a.CODE_PROMPT_HASH_MISMATCH,
    a.CODE_EXPIRED,
    a.CODE_NOT_YET_VALID,
    a.CODE_BAD_SIGNATURE,
}


def signed(key: Ed25519PrivateKey = OPERATOR, **claims: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "job_id": JOB,
        "model": MODEL,
        "prompt_template_hash": PROMPT,
        "operator_id": "op-1",
        "issued_at_ms": ISSUED,
        "expires_at_ms": EXPIRES,
    }
    fields.update(claims)
    document: dict[str, Any] = json.loads(sign_attestation(key, **fields))
    return document


VALID = signed()


def refused(document: bytes | str | None, *, job_id: str = JOB, now_ms: int = NOW) -> AttestationError:
    """The verifier's refusal of ``document``; fails the test when it is accepted."""
    outcome = attempt(lambda: VERIFIER.verify(document, job_id=job_id, now_ms=now_ms), AttestationError)
    assert isinstance(outcome, AttestationError), f"accepted: {document!r:.300}"
    assert outcome.code in CODES
    assert str(outcome).startswith(f"{outcome.code}: ")
    return outcome


def test_the_untouched_document_is_accepted() -> None:
    """The control: every refusal below is about the mutation, not the base document."""
    verified = VERIFIER.verify(json.dumps(VALID), job_id=JOB, now_ms=NOW)
    assert verified.claims.job_id == JOB
    assert verified.claims.operator_id == "op-1"


@fuzz(1000)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.binary(max_size=40).map(lambda b: json.dumps(VALID).encode()[: len(b) * 7] + b),
        st.text(surrogate, min_size=1, max_size=3).map(lambda s: json.dumps(VALID)[:-1] + s),
        st.integers(0, 20_000).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 3).map(lambda n: json.dumps(VALID).encode() + b" " * (a.MAX_DOCUMENT_BYTES * n)),
    )
)
def test_random_bytes_and_text_are_refused(document: bytes | str) -> None:
    error = refused(document)
    if isinstance(document, bytes) and len(document) > a.MAX_DOCUMENT_BYTES:
        assert error.code == a.CODE_MALFORMED


@fuzz(500)
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(a.FIELDS)), json_values, max_size=9)))
def test_any_json_that_is_not_a_signed_document_is_refused(value: Any) -> None:
    refused(json.dumps(value))


wrong_type = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, set[str]]:
    """The valid document with one change (not re-signed), and the codes that may refuse it."""
    document = dict(VALID)
    field = draw(st.sampled_from(sorted(a.FIELDS)))
    how = draw(st.sampled_from(["drop", "wrong_type", "other_value", "unknown_key", "duplicate", "blank"]))
    expected = {a.CODE_MALFORMED}
    if how == "drop":
        del document[field]
    elif how == "wrong_type":
        value = draw(wrong_type if field in a._INT_FIELDS else st.one_of(wrong_type, st.integers()))
        document[field] = value
        if field == "schema_version":
            expected.add(a.CODE_SCHEMA_VERSION)  # an int-like float is refused either way
    elif how == "other_value":
        if field in a._INT_FIELDS:
            document[field] = draw(st.integers(-(2**70), 2**70).filter(lambda v: v != VALID[field]))
            expected |= {a.CODE_SCHEMA_VERSION, a.CODE_BAD_SIGNATURE}
        elif field == "signature":
            document[field] = base64.b64encode(draw(st.binary(min_size=64, max_size=64))).decode()
            expected = {a.CODE_BAD_SIGNATURE}
        else:
            other = draw(st.text(storable_char, min_size=1, max_size=40).filter(lambda v: v != VALID[field]))
            document[field] = other
            expected |= {a.CODE_BAD_SIGNATURE}
    elif how == "unknown_key":
        document[draw(st.text(max_size=10).filter(lambda k: k not in a.FIELDS))] = draw(json_values)
    elif how == "duplicate":
        text = json.dumps(document)
        return text[:-1] + f", {json.dumps(field)}: {json.dumps(document[field])}}}", field, expected
    else:  # blank, or over-long text, or a lone surrogate
        document[field] = draw(
            st.one_of(
                st.text(" \t", max_size=3),
                st.text(storable_char, min_size=a.MAX_FIELD_CHARS + 1, max_size=a.MAX_FIELD_CHARS + 5),
                # one: json.loads joins an escaped high+low pair into one valid character
                surrogate.map(str),
            )
        )
    return json.dumps(document), field, expected


@fuzz(800)
@given(mutated())
def test_a_changed_document_is_refused_with_its_code(case: tuple[str, str, set[str]]) -> None:
    document, field, expected = case
    error = refused(document)
    assert error.code in expected, (field, error)


@st.composite
def broken_signatures(draw: st.DrawFn) -> str:
    good = VALID["signature"]
    return draw(
        st.one_of(
            st.integers(0, len(good) - 1).map(lambda n: good[:n]),  # truncated
            st.binary(max_size=100)
            .filter(lambda b: len(b) != 64)
            .map(lambda b: base64.b64encode(b).decode()),
            st.text(max_size=100).filter(lambda s: s != good),  # not base64 (mostly)
            st.integers(0, len(good) - 1).map(
                lambda i: good[:i] + ("A" if good[i] != "A" else "B") + good[i + 1 :]
            ),
            st.just(base64.urlsafe_b64encode(base64.b64decode(good)).decode()).filter(lambda s: s != good),
        )
    )


@fuzz(500)
@given(broken_signatures())
def test_a_broken_signature_is_refused(signature: str) -> None:
    error = refused(json.dumps({**VALID, "signature": signature}))
    assert error.code in {a.CODE_MALFORMED, a.CODE_BAD_SIGNATURE}


@fuzz(200)
@given(st.binary(min_size=32, max_size=32).filter(lambda b: b != bytes(range(32))))
def test_a_document_signed_by_another_key_is_refused(seed: bytes) -> None:
    stranger = Ed25519PrivateKey.from_private_bytes(seed)
    error = refused(json.dumps(signed(stranger)))
    assert error.code == a.CODE_BAD_SIGNATURE


@fuzz(500)
@given(
    st.sampled_from([JOB, "dj_other", "dj_0123456789abcdeF"]),
    st.sampled_from([MODEL, "summariser-v2", "Summariser-v1"]),
    st.sampled_from([PROMPT, a.prompt_template_hash("Summarise {sources}"), "sha256:"]),
    st.sampled_from([a.PURPOSE_LLM_SUMMARY, "decay.llm_summary ", "other"]),
    st.integers(ISSUED - 10_000_000, ISSUED + 10_000_000),
    st.integers(1, 20_000_000),
    st.integers(ISSUED - 20_000_000, ISSUED + 20_000_000),
)
def test_a_well_signed_document_is_accepted_only_for_its_job_model_prompt_and_time(
    job: str, model: str, prompt: str, purpose: str, issued: int, lifetime: int, now: int
) -> None:
    document = json.dumps(
        signed(
            job_id=job,
            model=model,
            prompt_template_hash=prompt,
            purpose=purpose,
            issued_at_ms=issued,
            expires_at_ms=issued + lifetime,
        )
    )
    matches = (job, model, prompt, purpose) == (JOB, MODEL, PROMPT, a.PURPOSE_LLM_SUMMARY)
    in_time = issued - VERIFIER.skew_ms <= now < issued + lifetime
    outcome = attempt(lambda: VERIFIER.verify(document, job_id=JOB, now_ms=now), AttestationError)
    if matches and in_time:
        assert not isinstance(outcome, AttestationError), outcome
        assert outcome.claims.job_id == JOB
    else:
        assert isinstance(outcome, AttestationError)
        assert outcome.code in CODES - {a.CODE_MALFORMED, a.CODE_BAD_SIGNATURE, a.CODE_REQUIRED}


@fuzz(400)
@given(
    st.one_of(
        st.binary(max_size=120),
        st.text(max_size=120),
        st.binary(max_size=60).map(
            lambda b: b"-----BEGIN PUBLIC KEY-----\n" + b + b"\n-----END PUBLIC KEY-----\n"
        ),
        st.binary(min_size=32, max_size=32),
    )
)
def test_an_operator_key_file_is_an_ed25519_key_or_a_configuration_error(data: bytes | str) -> None:
    key = attempt(lambda: load_public_key(data), ConfigurationError)
    if isinstance(key, ConfigurationError):
        assert "operator public key" in str(key)
    else:
        assert isinstance(key, Ed25519PublicKey)
        assert len(key.public_bytes(Encoding.Raw, PublicFormat.Raw)) == 32


def test_parse_refuses_a_non_document_type_cleanly() -> None:
    for value in (1, 1.5, ["{}"], {"a": 1}):
        outcome = attempt(lambda: parse_attestation(value), AttestationError)  # type: ignore[arg-type]  # noqa: B023
        assert isinstance(outcome, AttestationError)
        assert outcome.code == a.CODE_MALFORMED
