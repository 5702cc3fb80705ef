"""One request header straight from the ASGI scope.

Starlette's `request.headers` builds a Headers object for each call to look a header up in the same
list; the sandbox's hot path (every call's Authorization, an event write's If-Match) reads the list.
"""
from __future__ import annotations


def header(scope, name: bytes) -> str | None:
    """The first value of the lower-case header `name`, as Starlette's Headers.get gives it (a batch part's
    own headers come before the ones it inherits from the batch)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
