"""Secrets in configs: which keys hold one, masking them in everything written or logged, and dropping a masked
value when a saved config is fed back."""

from __future__ import annotations

import re
from typing import Any

# The value secrets are replaced with in dumps (see `mask_secrets`).
MASKED = "***"
_SECRET_PARTS = ("api_key", "apikey", "password", "secret")
_NOT_SECRET_TOKENS = {"bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"}
# `scheme://user:password@host` → `scheme://***@host` (tracking servers, S3 endpoints, proxies)
_URI_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def is_secret_key(key: str) -> bool:
    key = key.lower()
    if key in _NOT_SECRET_TOKENS:
        return False
    # `token`, `hub_token`, `hf_token`, `access_token`, but not `tokenizer` or `missing_pad_token_strategy`.
    return key == "token" or key.endswith("_token") or any(part in key for part in _SECRET_PARTS)


def mask_secrets(value: Any) -> Any:
    """Secret-named keys → "***", credentials in URIs → "***@" (for anything written or logged)."""
    if isinstance(value, dict):
        return {
            k: (MASKED if is_secret_key(str(k)) and v not in (None, "") else mask_secrets(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return _URI_CREDENTIALS.sub(MASKED + "@", value)
    return value


def drop_masked(value: Any, path: str, notices: list[str]) -> Any:
    """`value` without the secrets a dump masked: "***" is not a token to send anywhere (a notice for each)."""
    if isinstance(value, list):
        return [drop_masked(v, f"{path}[{i}]", notices) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if item == MASKED and is_secret_key(str(key)):
            notices.append(f"{where}: {MASKED!r} is a masked secret (a saved config); treated as unset")
            continue
        out[key] = drop_masked(item, where, notices)
    return out
