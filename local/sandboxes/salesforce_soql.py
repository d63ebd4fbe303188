"""SOQL as the REST Query resource runs it: a documented subset, parsed and evaluated.

Built from the SOQL and SOSL Reference
(https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/):

* ``SELECT`` a list of fields, parent fields through relationship names
  (``Account.Name``, ``Opportunity.Account.Name``), child sub-queries
  (``(SELECT Quantity FROM OpportunityLineItems WHERE ... ORDER BY ... LIMIT n)``)
  or ``COUNT()``; ``FROM`` one object.
* ``WHERE`` with ``= != <> < <= > >= LIKE IN NOT IN``, ``AND``/``OR``/``NOT`` and
  parentheses. Mixing ``AND`` and ``OR`` without parentheses is refused, as the
  reference says ("client applications must specify parentheses when nesting
  operators").
* Literals: strings in single quotes (backslash escapes), numbers, ``true``,
  ``false``, ``null``, dates ``YYYY-MM-DD``, date-times ``YYYY-MM-DDThh:mm:ssZ`` or
  ``±hh:mm`` (fractional seconds accepted), and the date literals ``TODAY``,
  ``YESTERDAY``, ``TOMORROW``, ``LAST_N_DAYS:n``, ``NEXT_N_DAYS:n``,
  ``N_DAYS_AGO:n`` (UTC days; ``LAST_N_DAYS:1`` is yesterday and today).
* ``ORDER BY`` several fields ``ASC|DESC NULLS FIRST|LAST`` (nulls first by
  default, text case-insensitively), ``LIMIT``, ``OFFSET`` (at most 2,000).
* Text compares case-insensitively; a filter on a null field matches only
  ``= null``, ``!=`` and ``NOT IN``.

Errors carry Salesforce's shape: the query line, a caret, ``ERROR at Row:r:Column:c``
and the message (``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``,
``INVALID_QUERY_FILTER_OPERATOR``, ``NUMBER_OUTSIDE_VALID_RANGE``).

Not modelled (a query using them is refused as malformed): aggregate functions
other than ``COUNT()``, ``GROUP BY``, semi-joins, ``FIELDS()``, ``TYPEOF``,
``WITH``, ``FOR``, aliases, multi-select picklist operators and the week, month,
quarter and fiscal date literals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from local.sandboxes.salesforce_schema import (
    ID_TYPES,
    NUMBER_TYPES,
    STRING_TYPES,
    Field,
    SObjectType,
    normalize_id,
    parse_datetime,
    relationships,
    to_json,
)

__all__ = ["CompiledQuery", "QueryError", "Result", "Store", "compile_query", "run"]

MAX_OFFSET = 2000
_KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC",
        "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
    }
)  # fmt: skip
_DAY_LITERALS = {"TODAY": (0, 1), "YESTERDAY": (-1, 0), "TOMORROW": (1, 2)}
_N_LITERALS = ("LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:])
  | (?P<nlit>(?:LAST_N_DAYS|NEXT_N_DAYS|N_DAYS_AGO):\d+)
  | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.IGNORECASE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_CUSTOM_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the "
    "custom field name. Please reference your WSDL or the describe call for the "
    "appropriate names."
)
_CUSTOM_RELATIONSHIP_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' "
    "after the custom relationship name. Please reference your WSDL or the describe call "
    "for the appropriate names."
)
_CUSTOM_OBJECT_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the "
    "entity name. Please reference your WSDL or the describe call for the appropriate names."
)


class QueryError(Exception):
    """A query Salesforce refuses: ``code`` is its errorCode, ``message`` the full text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Store(Protocol):
    """The records a query reads: typed values keyed by canonical field name."""

    def records(self, sobject: str) -> Iterable[Mapping[str, Any]]: ...

    def get(self, sobject: str, record_id: str) -> Mapping[str, Any] | None: ...


# --- tokens and positioned errors -------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # string | datetime | date | nlit | number | ident | op | punct | eof
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "ident" and self.upper in words


def _error(text: str, pos: int, code: str, detail: str) -> QueryError:
    """Salesforce's positioned message: the line, a caret, the row and column, the detail."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    column = pos - line_start + 1
    caret = " " * (column - 1) + "^"
    return QueryError(code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{detail}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise _error(text, pos, "MALFORMED_QUERY", f"unexpected token: '{text[pos]}'")
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("eof", "", len(text)))
    return tokens


def _unquote(raw: str) -> str:
    """A string literal's value. ``\\%`` and ``\\_`` stay escaped for LIKE to read."""
    out: list[str] = []
    body = raw[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            nxt = body[index + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


# --- syntax tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    segments: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class _Literal:
    kind: str  # string | number | boolean | null | date | datetime | range
    value: Any
    pos: int


@dataclass(frozen=True)
class _Compare:
    path: _Path
    op: str  # = != < <= > >= LIKE IN NOT IN
    values: tuple[_Literal, ...]


@dataclass(frozen=True)
class _Logic:
    op: str  # AND | OR
    items: tuple[Any, ...]


@dataclass(frozen=True)
class _Not:
    item: Any


@dataclass(frozen=True)
class _Order:
    path: _Path
    descending: bool
    nulls_last: bool


@dataclass
class _Select:
    object_name: str
    object_pos: int
    items: list[Any] = field(default_factory=list)  # _Path | _Select (sub-query)
    where: Any = None
    order: list[_Order] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    offset_pos: int = 0
    count: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def unexpected(self, token: _Token | None = None) -> QueryError:
        token = token or self.token
        shown = "<EOF>" if token.kind == "eof" else f"'{token.text}'"
        return _error(self.text, token.pos, "MALFORMED_QUERY", f"unexpected token: {shown}")

    def expect_keyword(self, word: str) -> None:
        if not self.token.is_keyword(word):
            raise self.unexpected()
        self.advance()

    def expect_punct(self, char: str) -> None:
        if self.token.kind != "punct" or self.token.text != char:
            raise self.unexpected()
        self.advance()

    def parse(self) -> _Select:
        select = self.select(nested=False)
        if self.token.kind != "eof":
            raise self.unexpected()
        return select

    def select(self, nested: bool) -> _Select:
        self.expect_keyword("SELECT")
        items: list[Any] = []
        count = False
        while True:
            token = self.token
            if token.kind == "punct" and token.text == "(" and not nested:
                self.advance()
                items.append(self.select(nested=True))
                self.expect_punct(")")
            elif token.is_keyword("COUNT") and self.tokens[self.index + 1].text == "(":
                self.advance()
                self.expect_punct("(")
                self.expect_punct(")")
                count = True
            else:
                items.append(self.path())
            if self.token.kind == "punct" and self.token.text == ",":
                self.advance()
                continue
            break
        if count and items:
            raise self.unexpected(self.tokens[self.index - 1])
        self.expect_keyword("FROM")
        name = self.token
        if name.kind != "ident" or name.upper in _KEYWORDS or "." in name.text:
            raise self.unexpected()
        self.advance()
        select = _Select(name.text, name.pos, items, count=count)
        if self.token.is_keyword("WHERE"):
            self.advance()
            select.where = self.condition()
        if self.token.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            select.order = self.order_list()
        if self.token.is_keyword("LIMIT"):
            self.advance()
            select.limit = self.integer()
        if not nested and self.token.is_keyword("OFFSET"):
            select.offset_pos = self.advance().pos
            select.offset = self.integer()
        return select

    def path(self) -> _Path:
        token = self.token
        if token.kind != "ident" or token.upper in _KEYWORDS:
            raise self.unexpected()
        self.advance()
        return _Path(tuple(token.text.split(".")), token.pos)

    def integer(self) -> int:
        token = self.token
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected()
        self.advance()
        return int(token.text)

    def order_list(self) -> list[_Order]:
        out = []
        while True:
            path = self.path()
            descending = False
            if self.token.is_keyword("ASC", "DESC"):
                descending = self.advance().upper == "DESC"
            nulls_last = False
            if self.token.is_keyword("NULLS"):
                self.advance()
                if not self.token.is_keyword("FIRST", "LAST"):
                    raise self.unexpected()
                nulls_last = self.advance().upper == "LAST"
            out.append(_Order(path, descending, nulls_last))
            if self.token.kind == "punct" and self.token.text == ",":
                self.advance()
                continue
            return out

    def condition(self) -> Any:
        items = [self.unary()]
        op: str | None = None
        while self.token.is_keyword("AND", "OR"):
            if op is not None and self.token.upper != op:
                raise self.unexpected()
            op = self.advance().upper
            items.append(self.unary())
        return _Logic(op, tuple(items)) if op else items[0]

    def unary(self) -> Any:
        if self.token.is_keyword("NOT"):
            self.advance()
            return _Not(self.unary())
        if self.token.kind == "punct" and self.token.text == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> _Compare:
        path = self.path()
        token = self.token
        if token.is_keyword("NOT"):
            self.advance()
            if not self.token.is_keyword("IN"):
                raise self.unexpected()
            self.advance()
            return _Compare(path, "NOT IN", self.value_list())
        if token.is_keyword("IN"):
            self.advance()
            return _Compare(path, "IN", self.value_list())
        if token.is_keyword("LIKE"):
            self.advance()
            return _Compare(path, "LIKE", (self.value(),))
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return _Compare(path, op, (self.value(),))
        raise self.unexpected()

    def value_list(self) -> tuple[_Literal, ...]:
        self.expect_punct("(")
        values = [self.value()]
        while self.token.kind == "punct" and self.token.text == ",":
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        return tuple(values)

    def value(self) -> _Literal:
        token = self.advance()
        if token.kind == "string":
            return _Literal("string", _unquote(token.text), token.pos)
        if token.kind == "number":
            return _Literal("number", Decimal(token.text), token.pos)
        if token.kind == "date":
            try:
                return _Literal("date", date.fromisoformat(token.text), token.pos)
            except ValueError:
                raise self.unexpected(token) from None
        if token.kind == "datetime":
            parsed = parse_datetime(token.text)
            if parsed is None:
                raise self.unexpected(token)
            return _Literal("datetime", parsed, token.pos)
        if token.kind == "nlit":
            name, _, count = token.text.partition(":")
            return _Literal("range", (name.upper(), int(count)), token.pos)
        if token.is_keyword("TRUE", "FALSE"):
            return _Literal("boolean", token.upper == "TRUE", token.pos)
        if token.is_keyword("NULL"):
            return _Literal("null", None, token.pos)
        if token.kind == "ident" and token.upper in _DAY_LITERALS:
            return _Literal("range", (token.upper, 0), token.pos)
        raise self.unexpected(token)


# --- compilation against the schema --------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """A field path: the reference fields walked, then the field read."""

    steps: tuple[Field, ...]
    field: Field

    @property
    def keys(self) -> tuple[str, ...]:
        return (*(str(step.relationship_name) for step in self.steps), self.field.name)


@dataclass(frozen=True)
class _Test:
    path: _Resolved
    op: str
    values: tuple[Any, ...]  # typed literals; ("range", name, n) tuples for date literals


@dataclass
class _Child:
    name: str
    child: SObjectType
    parent_field: Field
    items: list[_Resolved]
    where: Any
    order: list[tuple[_Resolved, bool, bool]]
    limit: int | None


@dataclass
class CompiledQuery:
    """A query checked against the schema, ready to run against any store."""

    sobject: SObjectType
    items: list[_Resolved | _Child]
    where: Any
    order: list[tuple[_Resolved, bool, bool]]
    limit: int | None
    offset: int | None
    count: bool


class _Compiler:
    def __init__(self, text: str, schema: Mapping[str, SObjectType]) -> None:
        self.text = text
        self.schema = schema
        self.children = relationships(schema)

    def fail(self, pos: int, code: str, detail: str) -> QueryError:
        return _error(self.text, pos, code, detail)

    def sobject(self, name: str, pos: int) -> SObjectType:
        for obj in self.schema.values():
            if obj.name.lower() == name.lower():
                return obj
        raise self.fail(
            pos, "INVALID_TYPE", f"sObject type '{name}' is not supported. {_CUSTOM_OBJECT_HINT}"
        )

    def resolve(self, obj: SObjectType, path: _Path) -> _Resolved:
        steps: list[Field] = []
        current = obj
        for segment in path.segments[:-1]:
            ref = current.relationship(segment)
            target = ref.reference_to if ref is not None else None
            if ref is None or target is None or target not in self.schema:
                raise self.fail(
                    path.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{segment}' in field path. "
                    + _CUSTOM_RELATIONSHIP_HINT,
                )
            steps.append(ref)
            current = self.schema[target]
        found = current.field(path.segments[-1])
        if found is None:
            raise self.fail(
                path.pos,
                "INVALID_FIELD",
                f"No such column '{path.segments[-1]}' on entity '{current.name}'. "
                + _CUSTOM_FIELD_HINT,
            )
        return _Resolved(tuple(steps), found)

    def items(self, obj: SObjectType, raw: list[_Path]) -> list[_Resolved]:
        seen: set[tuple[str, ...]] = set()
        return [self.item(obj, path, seen) for path in raw]

    def item(self, obj: SObjectType, path: _Path, seen: set[tuple[str, ...]]) -> _Resolved:
        """One selected field; selecting the same one twice is refused."""
        resolved = self.resolve(obj, path)
        key = tuple(k.lower() for k in resolved.keys)
        if key in seen:
            raise self.fail(
                path.pos, "MALFORMED_QUERY", f"duplicate field selected: {'.'.join(path.segments)}"
            )
        seen.add(key)
        return resolved

    def order(self, obj: SObjectType, raw: list[_Order]) -> list[tuple[_Resolved, bool, bool]]:
        return [(self.resolve(obj, o.path), o.descending, o.nulls_last) for o in raw]

    def compile(self, select: _Select) -> CompiledQuery:
        obj = self.sobject(select.object_name, select.object_pos)
        items: list[_Resolved | _Child] = []
        seen: set[tuple[str, ...]] = set()
        for raw in select.items:
            if isinstance(raw, _Select):
                items.append(self.child(obj, raw))
            else:
                items.append(self.item(obj, raw, seen))
        if select.offset is not None and select.offset > MAX_OFFSET:
            raise self.fail(
                select.offset_pos,
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"Maximum SOQL offset allowed is {MAX_OFFSET}",
            )
        return CompiledQuery(
            obj,
            items,
            self.condition(obj, select.where),
            self.order(obj, select.order),
            select.limit,
            select.offset,
            select.count,
        )

    def child(self, parent: SObjectType, select: _Select) -> _Child:
        found = self.children[parent.name].get(select.object_name.lower())
        if found is None:
            raise self.fail(
                select.object_pos,
                "INVALID_TYPE",
                f"Didn't understand relationship '{select.object_name}' in FROM part of query "
                "call. " + _CUSTOM_RELATIONSHIP_HINT,
            )
        child_name, parent_field = found
        child = self.schema[child_name]
        return _Child(
            str(parent_field.child_relationship),
            child,
            parent_field,
            self.items(child, select.items),
            self.condition(child, select.where),
            self.order(child, select.order),
            select.limit,
        )

    def condition(self, obj: SObjectType, node: Any) -> Any:
        if node is None:
            return None
        if isinstance(node, _Logic):
            return _Logic(node.op, tuple(self.condition(obj, i) for i in node.items))
        if isinstance(node, _Not):
            return _Not(self.condition(obj, node.item))
        assert isinstance(node, _Compare)
        resolved = self.resolve(obj, node.path)
        f = resolved.field
        if node.op == "LIKE" and f.type not in STRING_TYPES:
            raise self.fail(
                node.path.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid operator on {f.soap_type} field: {f.name}",
            )
        if node.op in ("<", "<=", ">", ">=") and f.type == "boolean":
            raise self.fail(
                node.path.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid operator on boolean field: {f.name}",
            )
        values = tuple(self.literal(f, node.op, lit) for lit in node.values)
        return _Test(resolved, node.op, values)

    def literal(self, f: Field, op: str, lit: _Literal) -> Any:
        def wrong(expected: str, quoted: bool) -> QueryError:
            enclosed = (
                "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
            )
            return self.fail(
                lit.pos,
                "INVALID_QUERY_FILTER_OPERATOR",
                f"value of filter criterion for field '{f.name}' must be of type {expected} "
                f"and {enclosed}",
            )

        if lit.kind == "null":
            if op in ("IN", "NOT IN", "=", "!="):
                return None
            raise wrong(f.soap_type, f.type in STRING_TYPES or f.type in ID_TYPES)
        if lit.kind == "range" and op in ("IN", "NOT IN"):
            raise self.fail(lit.pos, "MALFORMED_QUERY", "unexpected token: IN")
        if f.type in ID_TYPES:
            if lit.kind != "string":
                raise wrong("id", quoted=True)
            normalized = normalize_id(lit.value)
            if normalized is None:
                raise self.fail(
                    lit.pos, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}"
                )
            return normalized
        if f.type in STRING_TYPES:
            if lit.kind != "string":
                raise wrong("string", quoted=True)
            return lit.value
        if f.type == "boolean":
            if lit.kind != "boolean":
                raise wrong("boolean", quoted=False)
            return lit.value
        if f.type in NUMBER_TYPES:
            if lit.kind != "number":
                raise wrong(f.soap_type, quoted=False)
            return lit.value
        if f.type == "date":
            if lit.kind == "range":
                return ("range", *lit.value)
            if lit.kind != "date":
                raise wrong("date", quoted=False)
            return lit.value
        if f.type == "datetime":
            if lit.kind == "range":
                return ("range", *lit.value)
            if lit.kind != "datetime":
                raise wrong("dateTime", quoted=False)
            return lit.value
        raise wrong(f.soap_type, quoted=False)


def compile_query(text: str, schema: Mapping[str, SObjectType]) -> CompiledQuery:
    """Parse and check a query; raises QueryError with Salesforce's code and message."""
    if not text.strip():
        raise QueryError("MALFORMED_QUERY", "unexpected token: <EOF>")
    return _Compiler(text, schema).compile(_Parser(text).parse())


# --- evaluation --------------------------------------------------------------------------


def _day_range(name: str, count: int, today: date) -> tuple[date, date]:
    """A date literal as a half-open range of UTC days."""
    if name in _DAY_LITERALS:
        start, end = _DAY_LITERALS[name]
        return today + timedelta(days=start), today + timedelta(days=end)
    if name == "LAST_N_DAYS":
        return today - timedelta(days=count), today + timedelta(days=1)
    if name == "NEXT_N_DAYS":
        return today + timedelta(days=1), today + timedelta(days=1 + count)
    return today - timedelta(days=count), today - timedelta(days=count - 1)  # N_DAYS_AGO


def _like(pattern: str, value: str) -> bool:
    regex = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        regex.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.fullmatch("".join(regex), value, re.IGNORECASE | re.DOTALL) is not None


def _comparable(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


@dataclass
class _Context:
    store: Store
    now: datetime
    include_deleted: bool

    def parent(self, sobject: str, record_id: Any) -> Mapping[str, Any] | None:
        if not isinstance(record_id, str):
            return None
        found = self.store.get(sobject, record_id)
        if found is None or (found.get("IsDeleted") and not self.include_deleted):
            return None
        return found

    def value(self, record: Mapping[str, Any], path: _Resolved) -> Any:
        current: Mapping[str, Any] | None = record
        for step in path.steps:
            assert current is not None and step.reference_to is not None
            current = self.parent(step.reference_to, current.get(step.name))
            if current is None:
                return None
        return current.get(path.field.name) if current is not None else None

    def matches(self, record: Mapping[str, Any], node: Any) -> bool:
        if node is None:
            return True
        if isinstance(node, _Logic):
            results = (self.matches(record, item) for item in node.items)
            return all(results) if node.op == "AND" else any(results)
        if isinstance(node, _Not):
            return not self.matches(record, node.item)
        assert isinstance(node, _Test)
        return self.test(self.value(record, node.path), node)

    def test(self, value: Any, node: _Test) -> bool:
        op = node.op
        if op in ("IN", "NOT IN"):
            found = any(_comparable(value) == _comparable(v) for v in node.values)
            return found if op == "IN" else not found
        wanted = node.values[0]
        if isinstance(wanted, tuple):
            return self.in_range(value, node.path.field, op, wanted)
        if op == "LIKE":
            return isinstance(value, str) and _like(wanted, value)
        if op == "=":
            return bool(_comparable(value) == _comparable(wanted))
        if op == "!=":
            return bool(_comparable(value) != _comparable(wanted))
        if value is None:
            return False
        left, right = _comparable(value), _comparable(wanted)
        checks = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
        return bool(checks[op])

    def in_range(self, value: Any, f: Field, op: str, literal: tuple[Any, ...]) -> bool:
        if value is None:
            return op == "!="
        start_day, end_day = _day_range(literal[1], literal[2], self.now.date())
        start: Any = start_day
        end: Any = end_day
        if f.type == "datetime":
            start = datetime.combine(start_day, datetime.min.time(), UTC)
            end = datetime.combine(end_day, datetime.min.time(), UTC)
        inside = start <= value < end
        checks = {
            "=": inside,
            "!=": not inside,
            "<": value < start,
            "<=": value < end,
            ">": value >= end,
            ">=": value >= start,
        }
        return bool(checks[op])

    def sort(
        self, rows: list[Mapping[str, Any]], order: list[tuple[_Resolved, bool, bool]]
    ) -> list[Mapping[str, Any]]:
        out = list(rows)
        for path, descending, nulls_last in reversed(order):
            # With reverse=True the null group must rank high to land first.
            null_rank = 1 if nulls_last != descending else -1

            def key(row: Mapping[str, Any], path: _Resolved = path, rank: int = null_rank) -> Any:
                value = self.value(row, path)
                if value is None:
                    return (rank, "")
                return (0, _comparable(value))

            out.sort(key=key, reverse=descending)
        return out


@dataclass
class Result:
    """Rendered rows, each with its weight against the batch size (itself + children)."""

    rows: list[dict[str, Any]]
    weights: list[int]
    total: int


def _attributes(sobject: str, record_id: Any, version: str) -> dict[str, Any]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}


def _render(
    ctx: _Context,
    record: Mapping[str, Any],
    sobject: SObjectType,
    items: list[_Resolved],
    version: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": _attributes(sobject.name, record.get("Id"), version)}
    for path in items:
        target: dict[str, Any] | None = out
        current: Mapping[str, Any] | None = record
        for step in path.steps:
            assert target is not None and current is not None and step.reference_to
            key = str(step.relationship_name)
            current = ctx.parent(step.reference_to, current.get(step.name))
            if current is None:
                target.setdefault(key, None)
                target = None
                break
            nested = target.get(key)
            if not isinstance(nested, dict):
                nested = {"attributes": _attributes(step.reference_to, current.get("Id"), version)}
                target[key] = nested
            target = nested
        if target is not None and current is not None:
            target[path.field.name] = to_json(current.get(path.field.name))
    return out


def run(
    query: CompiledQuery, store: Store, now: datetime, version: str, include_deleted: bool
) -> Result:
    """Every row of a query, rendered as the REST API renders records."""
    ctx = _Context(store, now, include_deleted)
    rows = [
        r
        for r in store.records(query.sobject.name)
        if (include_deleted or not r.get("IsDeleted")) and ctx.matches(r, query.where)
    ]
    rows = ctx.sort(rows, query.order)
    start = query.offset or 0
    rows = rows[start:]
    if query.limit is not None:
        rows = rows[: query.limit]
    if query.count:
        return Result([], [], len(rows))
    children: dict[str, dict[Any, list[Mapping[str, Any]]]] = {}
    for item in query.items:
        if isinstance(item, _Child):
            grouped: dict[Any, list[Mapping[str, Any]]] = {}
            for child in store.records(item.child.name):
                if include_deleted or not child.get("IsDeleted"):
                    grouped.setdefault(child.get(item.parent_field.name), []).append(child)
            children[item.name] = grouped
    plain = [i for i in query.items if isinstance(i, _Resolved)]
    rendered: list[dict[str, Any]] = []
    weights: list[int] = []
    for row in rows:
        out = _render(ctx, row, query.sobject, plain, version)
        weight = 1
        for item in query.items:
            if not isinstance(item, _Child):
                continue
            kids = [
                k for k in children[item.name].get(row.get("Id"), []) if ctx.matches(k, item.where)
            ]
            kids = ctx.sort(kids, item.order)
            if item.limit is not None:
                kids = kids[: item.limit]
            weight += len(kids)
            out[item.name] = (
                {
                    "totalSize": len(kids),
                    "done": True,
                    "records": [_render(ctx, k, item.child, item.items, version) for k in kids],
                }
                if kids
                else None
            )
        rendered.append(_reorder(out, query.items))
        weights.append(weight)
    return Result(rendered, weights, len(rendered))


def _reorder(row: dict[str, Any], items: list[_Resolved | _Child]) -> dict[str, Any]:
    """Keys in select-list order (sub-query results were appended last)."""
    out: dict[str, Any] = {"attributes": row["attributes"]}
    for item in items:
        key = item.name if isinstance(item, _Child) else item.keys[0]
        if key in row and key not in out:
            out[key] = row[key]
    return out
