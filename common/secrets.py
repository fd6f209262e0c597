"""Secrets never reach a file: which names hold secrets, and redaction of their values in text and records."""

from __future__ import annotations

import os
import re
from typing import Any

# Names that hold secrets: known ones, plus a pattern anchored at the end of the name (API keys, passwords, access
# tokens). TOKENIZERS_PARALLELISM, pad_token or tokenizer_type are not secrets and do not match.
SECRET_NAMES = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "WANDB_API_KEY", "GITHUB_TOKEN", "GH_TOKEN",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OPENAI_API_KEY", "COMET_API_KEY", "NEPTUNE_API_TOKEN",
                "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"}
SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|API_?TOKEN|ACCESS_?TOKEN|AUTH_?TOKEN|HUB_TOKEN|HF_TOKEN|SESSION_TOKEN"
                         r"|SECRET|SECRET_?KEY|SECRET_ACCESS_KEY|PRIVATE_KEY|PASSWORD|PASSWD|CREDENTIALS?)$",
                         re.IGNORECASE)
ENV_SECRET_NAME = re.compile(r"(?:^|_)TOKEN$", re.IGNORECASE)  # JUPYTER_TOKEN, CI_JOB_TOKEN: environment names only
# A value that is a boolean, a number, a plain word or short is never taken for a secret, so that replacing it
# in text cannot touch ordinary words ("false", "disabled", "8").
COMMON_VALUES = {"true", "false", "yes", "no", "on", "off", "none", "null", "disabled", "offline", "online"}
MIN_SECRET_LEN = 8
REDACTED = "<redacted>"


def is_secret_name(name: str, environment: bool = False) -> bool:
    """Whether a variable or key named ``name`` holds a secret (HF_TOKEN, WANDB_API_KEY, hub_token, ...)."""
    return (name.upper() in SECRET_NAMES or bool(SECRET_NAME.search(name))
            or (environment and bool(ENV_SECRET_NAME.search(name))))


def could_be_secret(value: str) -> bool:
    """Whether ``value`` can be a secret: long enough, not a boolean, a number or a plain word."""
    text = value.strip()
    if len(text) < MIN_SECRET_LEN or text.lower() in COMMON_VALUES or text.isalpha():
        return False
    try:
        float(text)
    except ValueError:
        return True
    return False


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables with secret names (HF_TOKEN, WANDB_API_KEY, ...), longest first."""
    environ = os.environ if environ is None else environ
    found = {v for k, v in environ.items() if is_secret_name(k, environment=True) and could_be_secret(v)}
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, secrets: list[str]) -> str:
    """Replace every secret value in free ``text`` (a log line). JSON goes through :func:`redact` before dumping."""
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


def redact(obj: Any, secrets: list[str]) -> Any:
    """Copy of ``obj`` with secret-named keys blanked and secret values replaced in its strings, at any depth."""
    if isinstance(obj, dict):
        return {k: REDACTED if is_secret_name(str(k)) and v else redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj
