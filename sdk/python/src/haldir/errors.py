"""Typed errors raised by the Haldir SDK.

Every error the server returns is JSON ``{"error", "code", "request_id", ...}``;
:func:`error_from_response` turns it into the most specific class below, so
callers can ``except BudgetExceededError`` instead of parsing codes.

The hierarchy::

    HaldirError
    ├── APIConnectionError          the server could not be reached
    ├── ValidationError             400 / 413 / 415 (bad input)
    ├── AuthenticationError         401 (missing, unknown or revoked API key)
    ├── PermissionDeniedError       403, and scope denials raised by the adapters
    │   ├── SessionInvalidError     the agent session is revoked or expired
    │   ├── BudgetExceededError     the spend would exceed the session's cap
    │   ├── PolicyDeniedError       a proxy policy refused the call
    │   └── ApprovalRequiredError   a human must approve first (carries request_id)
    ├── NotFoundError               404
    ├── ConflictError               409, and 422 idempotency_key_reused
    ├── RateLimitedError            429 (carries retry_after)
    ├── ServiceUnavailableError     503
    └── ServerError                 any other 5xx

No error message ever contains the API key: messages come from the server's
``error`` sentence, or from the SDK's own text.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = [
    "HaldirError",
    "APIConnectionError",
    "ValidationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "SessionInvalidError",
    "BudgetExceededError",
    "PolicyDeniedError",
    "ApprovalRequiredError",
    "NotFoundError",
    "ConflictError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "ServerError",
    "error_from_response",
]


class HaldirError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        message: a sentence for a person (the server's ``error`` field).
        status: the HTTP status, or ``None`` when the error did not come from
            an HTTP response (connection failures, adapter scope denials).
        code: the server's snake_case ``code`` (``"budget_exceeded"``, ...),
            or an SDK code such as ``"scope_denied"``.
        request_id: the server's request id; quote it when reporting a problem.
        field: the request field the server blamed, for validation errors.
        body: the full decoded error body (empty when there was none).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        field: Optional[str] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.field = field
        self.body: dict[str, Any] = dict(body or {})

    def __str__(self) -> str:
        extras = []
        if self.code:
            extras.append(f"code={self.code}")
        if self.status is not None:
            extras.append(f"status={self.status}")
        if self.field:
            extras.append(f"field={self.field}")
        if self.request_id:
            extras.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(extras)})" if extras else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r}, request_id={self.request_id!r})"


class APIConnectionError(HaldirError):
    """The request never got an HTTP response (refused, timed out, reset)."""


class ValidationError(HaldirError):
    """The server rejected the request's input (400, 413 or 415). ``field`` names the culprit."""


class AuthenticationError(HaldirError):
    """The API key is missing, unknown or revoked (401)."""


class PermissionDeniedError(HaldirError):
    """The caller may not do this (403), or an adapter's scope check failed.

    Subclasses narrow the reason; catch this class to handle every refusal.
    """


class SessionInvalidError(PermissionDeniedError):
    """The agent session is revoked or expired, so nothing more may run on it."""


class BudgetExceededError(PermissionDeniedError):
    """The amount does not fit the session's remaining spend cap.

    Attributes:
        remaining_budget: what the session can still spend, when the server said.
    """

    @property
    def remaining_budget(self) -> Optional[float]:
        value = self.body.get("remaining_budget")
        return value if isinstance(value, (int, float)) else None


class PolicyDeniedError(PermissionDeniedError):
    """A proxy policy (deny list, rate limit, time window, ...) refused the call."""

    @property
    def policy_id(self) -> Optional[str]:
        value = self.body.get("policy_id")
        return value if isinstance(value, str) else None


class ApprovalRequiredError(PermissionDeniedError):
    """A human must approve this call first.

    ``request_id`` is the approval request to approve (``client.approve``) or
    to wait for (``client.wait_for_approval``); once it is approved, making
    the same call again succeeds once.

    Note: ``request_id`` here is the *approval* request id; the HTTP request
    id of the refusal is in ``http_request_id``.
    """

    def __init__(self, message: str, *, approval_request_id: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.http_request_id = self.request_id
        self.request_id = approval_request_id

    def __str__(self) -> str:
        base = self.message
        extras = [f"code={self.code}"] if self.code else []
        if self.request_id:
            extras.append(f"approval request_id={self.request_id}")
        if self.http_request_id:
            extras.append(f"http request_id={self.http_request_id}")
        return f"{base} ({', '.join(extras)})" if extras else base


class NotFoundError(HaldirError):
    """The resource (session, secret, approval, ...) or the endpoint does not exist (404)."""


class ConflictError(HaldirError):
    """The request conflicts with the current state (409), or an Idempotency-Key
    was reused with a different body (422, code ``idempotency_key_reused``)."""


class RateLimitedError(HaldirError):
    """Too many requests (429). ``retry_after`` is the server's wait in seconds, if given."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServiceUnavailableError(HaldirError):
    """The server is temporarily unable to answer (503)."""


class ServerError(HaldirError):
    """The server failed (5xx other than 503). Quote ``request_id`` when reporting it."""


_BY_CODE: dict[str, type[HaldirError]] = {
    "invalid_request": ValidationError,
    "payload_too_large": ValidationError,
    "unsupported_media_type": ValidationError,
    "unauthenticated": AuthenticationError,
    "insufficient_scope": PermissionDeniedError,
    "session_invalid": SessionInvalidError,
    "budget_exceeded": BudgetExceededError,
    "policy_denied": PolicyDeniedError,
    "approval_required": ApprovalRequiredError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "idempotency_key_reused": ConflictError,
    "rate_limited": RateLimitedError,
    "unavailable": ServiceUnavailableError,
}

_BY_STATUS: dict[int, type[HaldirError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    415: ValidationError,
    422: ConflictError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def _message_of(status: int, body: Mapping[str, Any]) -> str:
    for key in ("error", "reason"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    # A refused proxy call answers with an MCP CallToolResult instead.
    content = body.get("content")
    if isinstance(content, list):
        texts = [str(c["text"]) for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)]
        if texts:
            return " ".join(texts)
    return f"the Haldir server answered HTTP {status}"


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Parse a Retry-After header given in seconds; HTTP dates are ignored."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(status: int, body: Any, headers: Optional[Mapping[str, str]] = None) -> HaldirError:
    """Build the most specific :class:`HaldirError` for an error response.

    ``body`` is the decoded JSON (anything else is treated as no body);
    ``headers`` supplies ``Retry-After`` and ``X-Request-ID``.
    """
    data: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}

    def text(key: str) -> Optional[str]:
        value = data.get(key)
        return value if isinstance(value, str) and value else None

    code = text("code")
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or (ServerError if status >= 500 else HaldirError)
    header_request_id = hdrs.get("x-request-id") or None
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": header_request_id or text("request_id"),
        "field": text("field"),
        "body": data,
    }
    message = _message_of(status, data)
    if cls is ApprovalRequiredError:
        # The contract carries the approval request's id in "request_id",
        # which the error envelope also uses for the HTTP request id; the
        # X-Request-ID header tells the two apart.
        approval_id = text("approval_request_id")
        if approval_id is None and text("request_id") != header_request_id:
            approval_id = text("request_id")
        return ApprovalRequiredError(message, approval_request_id=approval_id, **kwargs)
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after=parse_retry_after(hdrs.get("retry-after")), **kwargs)
    return cls(message, **kwargs)
