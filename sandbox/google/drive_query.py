"""The files.list `q` search language, the subset a sync engine uses, compiled to a predicate.

Grammar and terms from https://developers.google.com/workspace/drive/api/guides/search-files and
.../ref-search-terms: `query_term operator value`, combined with `and`, `or`, `not` and parentheses;
strings in single quotes with `\\'` and `\\\\` escapes. Served here: `'ID' in parents`, `name` and
`mimeType` with `=`, `!=`, `contains`; `trashed` and `starred` with `=`/`!=` true|false; `createdTime` and
`modifiedTime` compared to an RFC 3339 time; `appProperties has { key='k' and value='v' }` (and
`properties`). Anything else is refused the way Drive refuses a query it cannot parse: 400 `invalid`,
"Invalid Value", location `q` (the error body Drive sends, seen in client reports); the message names what
the sandbox did not understand, which Drive does not, so a test can tell an unsupported term from a typo.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from sandbox.errors import google_error

Predicate = Callable[[dict], bool]  # over the file's view: {"name", "mimeType", "parents", ...}

_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>!=|<=|>=|=|<|>)|(?P<punct>[(){}])"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))")
_TEXT_TERMS = frozenset({"name", "mimeType"})
_BOOL_TERMS = frozenset({"trashed", "starred"})
_TIME_TERMS = frozenset({"createdTime", "modifiedTime"})
_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def invalid_query(detail: str):
    return google_error(400, "invalid", f"Invalid Value (sandbox: {detail})", location="q")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None:
            raise invalid_query(f"cannot read the query from {text[at:].strip()[:20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        at = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, aliases: dict[str, str]):
        self.tokens = _tokens(text)
        self.aliases = aliases
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1].lower() != value.lower()):
            want = value or kind or "more"
            raise invalid_query(f"expected {want} at {token[1] if token else 'the end'!r}")
        self.at += 1
        return token[1]

    def at_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() == word

    def expression(self) -> Predicate:
        terms = [self.conjunction()]
        while self.at_word("or"):
            self.at += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda f: any(t(f) for t in terms))

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self.at_word("and"):
            self.at += 1
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else (lambda f: all(t(f) for t in terms))

    def unary(self) -> Predicate:
        if self.at_word("not"):
            self.at += 1
            inner = self.unary()
            return lambda f: not inner(f)
        if self.peek() == ("punct", "("):
            self.at += 1
            inner = self.expression()
            self.take("punct", ")")
            return inner
        return self.term()

    def term(self) -> Predicate:
        token = self.peek()
        if token is not None and token[0] == "string":
            value = self.take()
            value = self.aliases.get(value, value)
            self.take("word", "in")
            collection = self.take("word")
            if collection != "parents":
                raise invalid_query(f"'{collection}' is not served after 'in' (only parents)")
            return lambda f: value in f["parents"]
        field = self.take("word")
        if field in ("appProperties", "properties"):
            return self.has_property(field)
        if field in _TEXT_TERMS:
            return self.text(field)
        if field in _BOOL_TERMS:
            op = self.take("op")
            literal = self.take("word").lower()
            if op not in ("=", "!=") or literal not in ("true", "false"):
                raise invalid_query(f"{field} takes = or != with true or false")
            wanted = literal == "true"
            return (lambda f: f[field] == wanted) if op == "=" else (lambda f: f[field] != wanted)
        if field in _TIME_TERMS:
            compare = _COMPARE[self.take("op")]
            moment = _rfc3339(self.take("string"))
            return lambda f: compare(_rfc3339(f[field]), moment)
        raise invalid_query(f"query term {field!r} is not emulated")

    def text(self, field: str) -> Predicate:
        if self.at_word("contains"):
            self.at += 1
            needle = self.take("string").lower()
            if field == "name":  # Drive matches name prefixes of words; a substring test is close enough
                return lambda f: needle in f["name"].lower()
            return lambda f: needle in f[field].lower()
        op = self.take("op")
        value = self.take("string")
        if op not in ("=", "!="):
            raise invalid_query(f"{field} takes =, != or contains")
        return (lambda f: f[field] == value) if op == "=" else (lambda f: f[field] != value)

    def has_property(self, field: str) -> Predicate:
        self.take("word", "has")
        self.take("punct", "{")
        self.take("word", "key")
        self.take("op", "=")
        key = self.take("string")
        self.take("word", "and")
        self.take("word", "value")
        self.take("op", "=")
        value = self.take("string")
        self.take("punct", "}")
        return lambda f: f[field].get(key) == value


def _rfc3339(text: str) -> datetime:
    """A time in the query; one without an offset is UTC, as the search guide says."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_query(f"{text!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def compile_query(text: str | None, aliases: dict[str, str] | None = None) -> Predicate | None:
    """The predicate for `q`, None for no query (every file). `aliases` maps the ids a query may name a
    folder by (`root`, `appDataFolder`) to the folder's own id."""
    if text is None or not text.strip():
        return None
    parser = _Parser(text, aliases or {})
    predicate = parser.expression()
    if parser.peek() is not None:
        raise invalid_query(f"unexpected {parser.peek()[1]!r}")
    return predicate
