"""What the sync and async clients share: configuration, request building,
the retry policy and response decoding. No I/O happens here, so both clients
behave identically and this module can be read on its own."""

from __future__ import annotations

import json
import os
import random
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Optional, Union
from urllib.parse import quote

import httpx

from ._version import __version__
from .errors import APIConnectionError, HaldirError, error_from_response, parse_retry_after

DEFAULT_BASE_URL = "http://localhost:8000"

#: Money as the SDK accepts it: decimal dollars. Decimals and strings are
#: sent as JSON numbers.
Money = Union[int, float, Decimal, str]

#: Statuses worth retrying: the server asked us to slow down, or is briefly down.
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How the clients retry.

    A request is retried when the server answers 429 or 503, or when no
    response arrives at all (connection refused, reset, timeout). POSTs carry
    an Idempotency-Key that stays the same across retries, so a retried
    write never runs twice.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_base: the first backoff, in seconds; it doubles each retry.
        backoff_max: the largest backoff between two attempts, in seconds.
        max_retry_after: the longest ``Retry-After`` the client will sleep
            for. A server asking for a longer wait gets no retry: the error
            is raised at once, with ``retry_after`` set, so the caller decides.
    """

    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: Optional[float]) -> Optional[float]:
        """Seconds to wait before retry number ``attempt`` (1-based), or None
        when the request must not be retried."""
        if attempt > self.max_retries:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            # Honour the server's wait; a little jitter spreads a thundering herd.
            return retry_after + random.uniform(0, min(1.0, self.backoff_base))
        ceiling: float = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        # "Equal jitter": never less than half the ceiling, never more than it.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Request:
    """One API call, before it is sent."""

    method: str
    path: str
    params: Optional[dict[str, Any]] = None
    json: Optional[dict[str, Any]] = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: Optional[str] = None
    #: Return the body as text instead of decoding JSON (exports).
    raw: bool = False
    #: Send an Idempotency-Key (every POST that writes).
    idempotent: bool = True


def path(template: str, *parts: str) -> str:
    """Fill a path template, escaping each part (ids can hold any character)."""
    return template.format(*(quote(str(p), safe="") for p in parts))


def compact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the keys whose value is None, so server defaults apply."""
    return {k: v for k, v in mapping.items() if v is not None}


def query(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters: None dropped, booleans as ``true``/``false``."""
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(body: Mapping[str, Any]) -> bytes:
    """Encode a request body. Money given as Decimal is sent as a JSON number."""
    return json.dumps(body, default=_json_default, separators=(",", ":")).encode()


def money(value: Optional[Money]) -> Optional[Union[int, float, Decimal]]:
    """Normalise an amount of dollars for a request body."""
    if value is None or isinstance(value, (int, float, Decimal)):
        return value
    return Decimal(value)


#: The ledger position a write reached (in responses) or a read must see (in requests).
POSITION_HEADER = "Haldir-Position"
_MAX_POSITION = 2**63 - 1


class Position:
    """The session consistency token: the highest ``Haldir-Position`` seen.

    Every request carries it once a response has named one, so a server
    behind a load balancer answers on any replica only once that replica
    shows the client's own writes (read-your-writes across replicas). It
    only ever grows, and is safe to share between threads.
    """

    def __init__(self, start: int = 0) -> None:
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= _MAX_POSITION:
            raise ValueError(f"position must be a ledger position (an integer from 0 to 2**63-1), not {start!r}")
        self._value = start
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def observe(self, response: httpx.Response) -> None:
        """Raise the token to the response's position; malformed values are ignored."""
        raw = response.headers.get(POSITION_HEADER, "")
        if raw.isascii() and raw.isdigit() and int(raw) <= _MAX_POSITION:
            with self._lock:
                self._value = max(self._value, int(raw))

    def send(self, headers: dict[str, str]) -> None:
        """Put the token in a request's headers, once there is one."""
        if self._value:
            headers[POSITION_HEADER] = str(self._value)


@dataclass
class Config:
    """Resolved client settings. The API key is kept out of ``repr``."""

    api_key: Optional[str] = field(repr=False)
    base_url: str
    timeout: float
    retry: RetryPolicy
    user_agent: str

    @classmethod
    def resolve(
        cls,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: float,
        retry: Optional[RetryPolicy],
        max_retries: Optional[int],
    ) -> "Config":
        key = api_key if api_key is not None else os.environ.get("HALDIR_API_KEY") or None
        url = (base_url or os.environ.get("HALDIR_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = RetryPolicy(max_retries, policy.backoff_base, policy.backoff_max, policy.max_retry_after)
        return cls(key, url, timeout, policy, f"haldir-python/{__version__}")

    def headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h


def prepare(req: Request) -> tuple[dict[str, str], Optional[bytes]]:
    """Headers and body bytes for ``req``. The Idempotency-Key is fixed here,
    once per call, so every retry of the call sends the same key."""
    headers = dict(req.headers)
    body: Optional[bytes] = None
    if req.json is not None or req.method == "POST":
        body = encode_json(req.json or {})
        headers["Content-Type"] = "application/json"
    if req.method == "POST" and (req.idempotent or req.idempotency_key):
        headers["Idempotency-Key"] = req.idempotency_key or str(uuid.uuid4())
    return headers, body


def decode(response: httpx.Response, raw: bool = False) -> Any:
    """Return the decoded body of a successful response, or raise its error."""
    if response.status_code < 400:
        if raw:
            return response.text
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise HaldirError(
                f"the Haldir server answered HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    raise error_from_response(response.status_code, body, response.headers)


def retry_delay(policy: RetryPolicy, attempt: int, outcome: Union[httpx.Response, Exception]) -> Optional[float]:
    """Seconds to wait before retrying after ``outcome``, or None to stop."""
    if isinstance(outcome, httpx.Response):
        if outcome.status_code not in RETRY_STATUSES:
            return None
        return policy.delay(attempt, parse_retry_after(outcome.headers.get("retry-after")))
    return policy.delay(attempt, None)


def connection_error(req: Request, exc: Exception, attempts: int) -> APIConnectionError:
    """The error raised when no response ever arrived."""
    return APIConnectionError(
        f"could not reach the Haldir server for {req.method} {req.path} after {attempts} attempt(s): {type(exc).__name__}: {exc}"
    )
