"""Plug-ins named in the settings (``package.module:callable``): handlers, text models, the
summary backend and the operator's attestation verifier."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from memtasks.config import Settings
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.text_models import TextModels
from memtasks.services.attestation import AttestationVerifier, load_public_key
from memtasks.services.decay_runner import SummaryBackend
from memtasks.services.mem_tree import HandlerRegistry


def load_object(spec: str, what: str) -> Any:
    """``package.module:callable`` → the callable's result; a clear error otherwise."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{what} must look like 'package.module:callable', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {what} {spec!r}: {exc}") from exc
    return factory()


def handler_registry(settings: Settings) -> HandlerRegistry:
    if settings.handlers is None:
        return HandlerRegistry.default()
    registry = load_object(settings.handlers, "MEMTASKS_HANDLERS")
    if not isinstance(registry, HandlerRegistry):
        raise ConfigurationError(f"MEMTASKS_HANDLERS {settings.handlers!r} did not return a HandlerRegistry")
    return registry


def text_models(settings: Settings) -> TextModels:
    if settings.text_models is None:
        return TextModels()
    models = load_object(settings.text_models, "MEMTASKS_TEXT_MODELS")
    if not isinstance(models, TextModels):
        raise ConfigurationError(f"MEMTASKS_TEXT_MODELS {settings.text_models!r} did not return TextModels")
    return models


def summary_backend(settings: Settings) -> SummaryBackend | None:
    """The configured summary backend; None: the default, which refuses (fail closed)."""
    if settings.summary_backend is None:
        return None
    backend: SummaryBackend = load_object(settings.summary_backend, "MEMTASKS_SUMMARY_BACKEND")
    return backend


def attestation_verifier(
    key_path: str | None, model: str | None, prompt_hash: str | None
) -> AttestationVerifier | None:
    """The verifier of operator attestations; None when none of its three parts is set (LLM
    summaries then fail closed); a :class:`ConfigurationError` naming what is missing."""
    if key_path is None and model is None and prompt_hash is None:
        return None
    if key_path is None or model is None or prompt_hash is None:
        raise ConfigurationError(
            "an LLM summary needs the operator key, the model and the prompt-template hash: set "
            "MEMTASKS_OPERATOR_PUBLIC_KEY, MEMTASKS_LLM_MODEL and MEMTASKS_LLM_PROMPT_TEMPLATE_HASH"
        )
    try:
        key = load_public_key(Path(key_path).read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the operator key {key_path}: {exc.strerror}") from None
    return AttestationVerifier(key, model, prompt_hash)


def settings_verifier(settings: Settings) -> AttestationVerifier | None:
    return attestation_verifier(
        settings.operator_public_key, settings.llm_model, settings.llm_prompt_template_hash
    )


__all__ = [
    "attestation_verifier",
    "handler_registry",
    "load_object",
    "settings_verifier",
    "summary_backend",
    "text_models",
]
