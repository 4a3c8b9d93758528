"""Keeping credentials out of what rerec writes: MLflow params, logs, compiled pipelines, images.

Credentials reach rerec only through the environment (on a cluster: Kubernetes secrets mounted as
environment variables, e.g. ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` for S3 and
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` for MLflow). Two helpers keep them there:

- :func:`redact_secrets` replaces the values of secret-looking keys (``password``, ``token``,
  ``aws_secret_access_key``, ...) and credential-looking values (an AWS key id, a private key, the
  password in ``https://user:pass@host``) in a params dict before it is logged.
- :func:`find_secrets` scans text (source, YAML, Dockerfiles) for credentials; ``tests/test_security.py``
  runs it over every file of the repository.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "***"

# A key is secret-looking when its last name segment (split at . _ - and camelCase) is one of these,
# a segment says password/secret anywhere, or it contains a compound name. "max_new_tokens",
# "token_ids" and "tokenizer" are not secrets.
_SECRET_SEGMENTS = {"password", "passwd", "pwd", "secret", "token", "apikey", "credential", "credentials",
                    "passphrase", "privatekey"}
_SECRET_COMPOUNDS = ("api_key", "access_key", "private_key", "secret_key", "session_token", "auth_token",
                     "access_token", "refresh_token", "client_secret")

# Values that are credentials whatever key holds them.
_VALUE_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "GitLab token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s@'\"]+)@[^\s'\"]+"),
}

# ``key: value`` / ``key = "value"`` / ``--key value`` / ``ENV KEY=value`` with a secret-looking key
# (a plain space separates key and value only after ``--``: prose says "create secret generic").
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<flag>--)?(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*)
    ['"]?(?:\s*[:=]\s*|(?(flag)\s+|(?!)))
    (?P<quote>['"]?)(?P<value>[^\s'"\#,;)}\]]+)(?P=quote)
    """
)
# Values that are not credentials: empty, placeholders, references to the environment or a secret.
_PLACEHOLDER = re.compile(
    r"""(?ix)^(
        |testing|test|dummy|example|placeholder|redacted|changeme|change[_-]?me|your[_-].*|<.*>|x{3,}|\*+
        |none|null|true|false|\.\.\.|pass|password|secret|token
    )$"""
)
_REFERENCE = re.compile(r"^(\$|\{|%\(|os\.|env\.|secret[A-Z]|valueFrom|secretKeyRef|self\.|args\.|config\.)")


@dataclass(frozen=True)
class SecretFinding:
    """One credential found in a text: what kind, on which line, and a masked excerpt."""

    kind: str
    line: int
    excerpt: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.excerpt}"


def is_secret_key(key: str) -> bool:
    """Whether a parameter name looks like it holds a credential (``aws_secret_access_key``: yes;
    ``max_new_tokens``, ``tokenizer``, ``secret_name``: no)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(key)).lower()
    if snake.endswith(("_name", "_ref", "_env", "_file", "_path")):  # names *of* secrets, not secrets
        return False
    if any(c in snake for c in _SECRET_COMPOUNDS):
        return True
    segments = [seg for seg in re.split(r"[^a-z0-9]+", snake) if seg]
    if not segments:
        return False
    return segments[-1] in _SECRET_SEGMENTS or any(seg in ("password", "passwd", "secret") for seg in segments)


def redact_value(text: str) -> str:
    """Mask credentials inside a string value (URL passwords, key ids, tokens); other text is kept."""
    text = _VALUE_PATTERNS["password in a URL"].sub(
        lambda m: m.group(0).replace(":" + m.group(1) + "@", ":" + REDACTED + "@"), text)
    for kind, pattern in _VALUE_PATTERNS.items():
        if kind != "password in a URL":
            text = pattern.sub(REDACTED, text)
    return text


def redact_secrets(params: Any) -> Any:
    """A copy of ``params`` (nested dicts/lists of plain values) safe to log: values of secret-looking
    keys become ``"***"`` and credential-looking substrings of other values are masked.

        >>> redact_secrets({"s3": {"aws_secret_access_key": "abc"}, "lr": 0.1})
        {'s3': {'aws_secret_access_key': '***'}, 'lr': 0.1}
    """
    if isinstance(params, Mapping):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact_secrets(v))
                for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(redact_secrets(v) for v in params)
    if isinstance(params, str):
        return redact_value(params)
    return params


def is_placeholder(value: object) -> bool:
    """Whether a value is a stand-in (``CHANGE_ME``, ``${VAR}``, ``<password>``...), not a credential."""
    text = "" if value is None else str(value)
    return bool(_PLACEHOLDER.match(text) or _REFERENCE.match(text))


def _mask(value: str) -> str:
    return value[:4] + "…" if len(value) > 4 else "…"


def find_secrets(text: str, *, code: bool = False) -> list[SecretFinding]:
    """Credentials in ``text``: known token formats anywhere, and literal values assigned to
    secret-looking keys (placeholders, names of environment variables and references to the
    environment or a secret are allowed). ``code=True`` (Python source): only quoted values count,
    since an unquoted value there is an expression, not a literal."""
    findings = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in _VALUE_PATTERNS.items():
            for m in pattern.finditer(line):
                value = m.group(1) if pattern.groups else m.group(0)
                if kind == "password in a URL" and (_PLACEHOLDER.match(value) or _REFERENCE.match(value)):
                    continue
                findings.append(SecretFinding(kind, lineno, _mask(value)))
        for m in _ASSIGNMENT.finditer(line):
            key, value = m.group("key"), m.group("value")
            if not is_secret_key(key) or _PLACEHOLDER.match(value) or _REFERENCE.match(value):
                continue
            if re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
                continue  # the name of an environment variable (or secret key), not its value
            if not m.group("quote") and (code or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*[.(].*", value)):
                continue  # an expression (call, attribute), not a literal
            if len(value) < 6:
                continue
            findings.append(SecretFinding(f"literal value for '{key}'", lineno, _mask(value)))
    return findings
