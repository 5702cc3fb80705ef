"""The `fields` system parameter (partial response) as Drive applies it.

Syntax from https://developers.google.com/workspace/drive/api/guides/fields-parameter: a comma-separated
list of fields, `a/b` to select a sub-field, `a(b,c)` to select several sub-fields of `a` (of each item
when `a` is an array), `*` for every field at that level. Drive v3 answers only the fields asked for; with
no `fields` it answers a default set per method (files: `kind,id,name,mimeType`; lists: those of each item,
https://developers.google.com/workspace/drive/api/guides/search-files#use-the-fields-parameter).
An unknown field is 400 invalidParameter, as Drive answers a mask naming a field its resources lack.
"""
from __future__ import annotations

from sandbox.errors import google_error

Mask = dict  # field name -> sub-mask, or None for the whole value

ALL: Mask = {"*": None}
FILE_DEFAULT: Mask = {"kind": None, "id": None, "name": None, "mimeType": None}


def bad_fields(detail: str):
    return google_error(400, "invalidParameter", f"Invalid field selection {detail}", location="fields")


def parse_fields(text: str | None, default: Mask) -> Mask:
    if text is None or not text.strip():
        return default
    mask, rest = _parse_list(text.replace(" ", ""), 0, text)
    if rest != len(text.replace(" ", "")):
        raise bad_fields(text)
    return mask


def _parse_list(text: str, at: int, original: str) -> tuple[Mask, int]:
    mask: Mask = {}
    while at < len(text):
        name_end = at
        while name_end < len(text) and text[name_end] not in ",()":
            name_end += 1
        path = text[at:name_end]
        if not path:
            raise bad_fields(original)
        sub: Mask | None = None
        at = name_end
        if at < len(text) and text[at] == "(":
            sub, at = _parse_list(text, at + 1, original)
            if at >= len(text) or text[at] != ")":
                raise bad_fields(original)
            at += 1
        _merge(mask, path.split("/"), sub)
        if at < len(text) and text[at] == ",":
            at += 1
            continue
        break
    return mask, at


def _merge(mask: Mask, steps: list[str], sub: Mask | None) -> None:
    head, rest = steps[0], steps[1:]
    if rest:
        child = mask.get(head, {})
        if child is None:  # already whole
            return
        _merge(child, rest, sub)
        mask[head] = child
    elif head in mask and mask[head] is not None and sub is not None:
        mask[head].update(sub)
    else:
        mask[head] = None if head in mask and mask[head] is None else sub


def apply_fields(value, mask: Mask | None, known: frozenset[str] | None = None):
    """The part of `value` the mask selects; `known` lists the names the top level may name."""
    if mask is None:
        return value
    if isinstance(value, list):
        return [apply_fields(item, mask) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in mask:
        return value
    if known is not None:
        unknown = [name for name in mask if name not in known]
        if unknown:
            raise bad_fields(unknown[0])
    return {name: apply_fields(value[name], sub) for name, sub in mask.items() if name in value}

