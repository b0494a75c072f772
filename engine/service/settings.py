"""Limits and access settings of one service instance, and the CANCEL_RULES_* variables they come from."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..csvio import DEFAULT_MAX_COLUMNS, ENV_MAX_COLUMNS
from ..errors import UsageError

# Worker processes are started by uvicorn from an import string, so everything they need travels in the
# environment; these are also the documented knobs of the service.
ENV_POLICY = "CANCEL_RULES_POLICY"
ENV_TOKEN = "CANCEL_RULES_TOKEN"
ENV_TOKEN_FILE = "CANCEL_RULES_TOKEN_FILE"
ENV_MAX_BODY_BYTES = "CANCEL_RULES_MAX_BODY_BYTES"
ENV_MAX_BATCH_ROWS = "CANCEL_RULES_MAX_BATCH_ROWS"
ENV_CORS_ORIGINS = "CANCEL_RULES_CORS_ORIGINS"
ENV_ALLOWED_HOSTS = "CANCEL_RULES_ALLOWED_HOSTS"
ENV_KEEPALIVE_TIMEOUT = "CANCEL_RULES_KEEPALIVE_TIMEOUT"
ENV_HEADER_TIMEOUT = "CANCEL_RULES_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "CANCEL_RULES_BODY_TIMEOUT"
ENV_SEND_TIMEOUT = "CANCEL_RULES_SEND_TIMEOUT"

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH_ROWS = 100_000
# Seconds a client may take: idle on a connection (before its first request and between requests), to send a
# request head from its first byte, to send the body once the head is in (10 MB at 1.4 Mbit/s), and to read an
# answer the server is held writing.
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    """Limits and access settings of one service instance."""

    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host header
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_columns: int = DEFAULT_MAX_COLUMNS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CANCEL_RULES_* variables; raises UsageError naming the bad variable."""
        env = os.environ if environ is None else environ
        origins = tuple(o.strip() for o in env.get(ENV_CORS_ORIGINS, "").split(",") if o.strip())
        return cls(token=_token(env), max_body_bytes=_positive_int(env, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
                   max_batch_rows=_positive_int(env, ENV_MAX_BATCH_ROWS, DEFAULT_MAX_BATCH_ROWS),
                   cors_origins=origins, allowed_hosts=_allowed_hosts(env),
                   keepalive_timeout=_seconds(env, ENV_KEEPALIVE_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT),
                   header_timeout=_seconds(env, ENV_HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT),
                   body_timeout=_seconds(env, ENV_BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT),
                   send_timeout=_seconds(env, ENV_SEND_TIMEOUT, DEFAULT_SEND_TIMEOUT),
                   max_columns=_positive_int(env, ENV_MAX_COLUMNS, DEFAULT_MAX_COLUMNS))


def _token(env: Mapping[str, str]) -> str | None:
    """The bearer token: from the token file if one is named, else the variable. A variable set but blank is an
    error: a token that did not arrive (an unset secret expanded to nothing) must not turn auth off."""
    for name in (ENV_TOKEN_FILE, ENV_TOKEN):
        if name in env and not env[name].strip():
            raise UsageError(f"{name} is set but blank; unset it to serve without a token")
        if name in env:
            return read_token_file(env[name]) if name == ENV_TOKEN_FILE else env[name].strip()
    return None


def read_token_file(path: str | Path) -> str:
    """The bearer token held in a file (surrounding whitespace ignored); raises UsageError if unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.__class__.__name__}") from None
    if not token:
        raise UsageError(f"the token file {path} is empty")
    return token


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise UsageError(f"{name} must be a positive number of seconds, got {text!r}")
    return value


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """Host names (`*.example.com`: its subdomains) and addresses the service answers for; () means any."""
    if ENV_ALLOWED_HOSTS not in env:
        return ()
    hosts = tuple(h.strip().lower() for h in env[ENV_ALLOWED_HOSTS].split(",") if h.strip())
    if not hosts:
        raise UsageError(f"{ENV_ALLOWED_HOSTS} lists no host; unset it to accept any Host header")
    for host in hosts:
        if ":" in host.strip("[]"):
            try:
                ipaddress.IPv6Address(host.strip("[]"))
                continue
            except ValueError:
                pass
        elif host == "*" or _HOST_NAME.fullmatch(host):
            continue
        raise UsageError(f"{ENV_ALLOWED_HOSTS}: {host!r} is not a host name (give names or addresses without "
                         "scheme or port, e.g. api.example.com,*.example.com,127.0.0.1)")
    return tuple(h.strip("[]").rstrip(".") for h in hosts)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise UsageError(f"{name} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise UsageError(f"{name} must be a positive integer, got {text!r}")
    return value
