"""Mail addresses in one canonical form, so that a header and a CRM field can be compared as strings.

Display names and comments go, case goes (in practice no provider has case-sensitive local parts,
and CRM users type addresses in any case), plus-addressing stays as written (`ann+crm@x` is a
different address from `ann@x` to the CRM, as in the seeds' product), and an internationalised
domain is written in its ASCII (punycode) form so `bücher.de` and `xn--bcher-kva.de` are one.
"""
from __future__ import annotations

from collections.abc import Iterable
from email.utils import getaddresses
from functools import lru_cache


def normalise_address(raw: str | None) -> str | None:
    """`"Ann" <Ann@Bücher.DE>` -> `ann@xn--bcher-kva.de`; None when there is no usable address."""
    if not raw:
        return None
    pairs = getaddresses([raw])
    return _canonical(pairs[0][1] if pairs else raw)


@lru_cache(maxsize=16_384)
def _canonical(address: str) -> str | None:
    """A bare address (no display name) in canonical form; cached, as mail repeats its parties."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return None
    return f"{local.lower()}@{_ascii_domain(domain)}"


def _ascii_domain(domain: str) -> str:
    domain = domain.strip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain  # not a valid IDN: compare it as written


def addresses_in(header_values: Iterable[str]) -> list[str]:
    """Every distinct address in some address headers (To: may list many), normalised, in order."""
    found: list[str] = []
    for value in header_values:
        for normalised in _addresses_of(value) if value else ():
            if normalised not in found:
                found.append(normalised)
    return found


@lru_cache(maxsize=16_384)
def _addresses_of(header_value: str) -> tuple[str, ...]:
    return tuple(a for a in (_canonical(address) for _name, address in getaddresses([header_value])) if a)
