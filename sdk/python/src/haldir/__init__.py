"""Haldir: the governance layer for AI agents.

>>> from haldir import HaldirClient
>>> h = HaldirClient()                     # $HALDIR_API_KEY, $HALDIR_BASE_URL
>>> session = h.create_session("my-agent", scopes=["tool", "spend:5"])

Framework adapters live in submodules that import their framework only when
used: :mod:`haldir.langchain`, :mod:`haldir.crewai`, :mod:`haldir.autogen`
(install the ``langchain``, ``crewai`` or ``autogen`` extra).
"""

from ._base import DEFAULT_BASE_URL, RetryPolicy
from ._version import __version__
from .async_client import AsyncHaldirClient
from .client import HaldirClient
from .errors import (
    APIConnectionError,
    ApprovalRequiredError,
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    HaldirError,
    NotFoundError,
    PermissionDeniedError,
    PolicyDeniedError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    SessionInvalidError,
    ValidationError,
)
from .governance import Governor, default_scope, govern

__all__ = [
    "__version__",
    "DEFAULT_BASE_URL",
    "HaldirClient",
    "AsyncHaldirClient",
    "RetryPolicy",
    "Governor",
    "govern",
    "default_scope",
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
]
