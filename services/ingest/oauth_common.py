"""What the Google and Microsoft flows share: their result, scope checks and the problems they raise."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.tokens import Grant
from services.ingest.problems import Problem


@dataclass(frozen=True)
class Authorized:
    """What a callback established: the account that signed in (None for a tenant's admin consent,
    where no user signs in), the grant to keep, and how to give it back if it is not kept."""

    account_email: str | None
    grant: Grant
    discard: Callable[[], Awaitable[None]] | None = None


def missing_scopes(required: tuple[str, ...], granted: tuple[str, ...]) -> list[str]:
    """Required scopes the user did not grant (Google's consent screen lets a user untick some).
    Graph may answer scopes with or without its resource prefix, and in any case."""

    def bare(scope: str) -> str:
        return scope.removeprefix("https://graph.microsoft.com/").lower()

    have = {bare(s) for s in granted}
    return [s for s in required if bare(s) not in have]


def provider_refused(provider: str, detail: str) -> Problem:
    """The provider or the user said no (denied consent, bad code, a permission unticked): 400."""
    return Problem(400, "authorization-refused", f"{provider} did not authorise the connection", detail)


def provider_failed(provider: str, detail: str) -> Problem:
    """The provider answered something we cannot use, or did not answer: 502."""
    return Problem(502, "provider-failed", f"{provider} sign-in failed", detail)


def same_address(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()
