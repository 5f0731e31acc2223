"""What the raw ASGI middlewares (rate limits, staff watch) share.

They run before FastAPI's routing and error handlers, so they read the bearer token from
the scope themselves and send their own ``application/problem+json`` refusals.
"""

from __future__ import annotations

import hashlib

import orjson
from starlette.types import Scope, Send

from payguard.errors import ProblemError

PROBLEM_JSON = "application/problem+json"


def bearer_token(scope: Scope) -> str | None:
    """The request's ``Authorization: Bearer`` token, or None."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token).strip()
    return None


def token_digest(token: str) -> str:
    """A short, stable key for a token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def send_too_many(scope: Scope, send: Send, problem: ProblemError, retry_after: int) -> None:
    """Answer 429 with ``problem`` as problem JSON and a ``Retry-After`` header."""
    body = orjson.dumps(problem.to_problem(instance=scope.get("path")))
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
