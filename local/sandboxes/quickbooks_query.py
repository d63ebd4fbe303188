"""The QuickBooks Online query language, as far as Intuit documents it.

Intuit's data-queries page describes a small SQL-like language::

    SELECT * | count(*) | Item[, Item] FROM Entity
        [WHERE cond [AND cond ...]]
        [ORDERBY Field [ASC|DESC][, ...]]
        [STARTPOSITION n] [MAXRESULTS n]

where each select-list Item is ``*`` or a field name. A list holding ``*`` returns
whole objects (``SELECT *, Sku FROM Item`` is how python-quickbooks' ``Item.all()``
asks for every field and the SKU); a list of field names only returns each object
cut down to those fields, marked ``"sparse": true``. The language has the
operators ``=  <  >  <=  >=  IN (...)  LIKE`` (``%`` is the only wildcard),
string literals in single quotes (``\\'`` escapes a quote), one entity per query
and no ``OR``, ``JOIN`` or ``GROUP BY``. Keywords are case-insensitive.
Parse errors answer code 4000 with a ``QueryParserError:`` detail; valid syntax
with a bad value (``MAXRESULTS 5000``) answers code 4001 with
``QueryValidationError:``, the two forms integrations report seeing.

Only the properties an entity's reference marks "filterable" may be tested in WHERE;
another answers 4001 ``QueryValidationError: property 'X' is not queryable`` (as
Intuit answered in ruckus/quickbooks-ruby issue 403; "The property which are
mentioned as filterable are only queryable", Intuit in intuit/QuickBooks-V3-DotNET-SDK
issue 163). ``FILTERABLE`` holds the entities whose list is known; NOT modelled: the
other entities' lists, whose WHERE accepts any property.

Evaluation choices where the docs say nothing:

* Field names match case-insensitively; a dotted path walks nested objects.
* A field that holds an object compares through its scalar part: ``value`` for
  references (``CustomerRef``), ``Address`` for ``PrimaryEmailAddr``,
  ``FreeFormNumber`` for phones, so ``PrimaryEmailAddr = 'a@b.com'`` works.
* Two operands that both read as numbers compare as numbers (``Id > '5'``); as
  ISO dates or date-times compare as instants (naive ones in the company's time
  zone); anything else compares as text, case-insensitively.
* A missing field matches no condition. Rows without ORDERBY come back by Id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_RESULTS_LIMIT = 1000
DEFAULT_MAX_RESULTS = 100
_COMPARISONS = ("=", "<", ">", "<=", ">=")
_UNSUPPORTED = {"OR", "JOIN", "GROUP", "HAVING", "NOT", "UNION", "LIMIT", "OFFSET"}
_SCALAR_KEYS = ("value", "Address", "FreeFormNumber", "URI")
# The properties Intuit's entity reference marks filterable, by entity (lower case).
# Invoice: its marks as two client libraries copy them, their union (Intuit's page
# itself was not read): Nytely-Official/quickbooks-api ``src/types/enums/filters.ts``
# and the ``search_invoices`` tool of several QuickBooks MCP servers.
FILTERABLE: Mapping[str, frozenset[str]] = {
    "invoice": frozenset(
        name.lower()
        for name in (
            "Id",
            "MetaData.CreateTime",
            "MetaData.LastUpdatedTime",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "CustomerRef",
            "SalesTermRef",
            "ProjectRef",
            "ClassRef",
            "DepartmentRef",
            "Balance",
            "TotalAmt",
        )
    ),
}

Value = str | Decimal | bool


class QueryError(Exception):
    """A query Intuit would reject; ``code`` is 4000 (parse) or 4001 (validation)."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail


def _parse_error(detail: str) -> QueryError:
    return QueryError("4000", "Error parsing query", f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


@dataclass(frozen=True)
class Condition:
    """``field op value``; ``values`` holds one literal, or several for IN."""

    field: str
    op: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Query:
    entity: str
    count: bool
    fields: tuple[str, ...] | None  # None means SELECT *
    where: tuple[Condition, ...]
    order_by: tuple[tuple[str, bool], ...]  # (field, descending)
    start_position: int
    max_results: int

    def mentions(self, field: str) -> bool:
        """True if a WHERE condition tests ``field`` (used for the Active default)."""
        return any(c.field.lower() == field.lower() for c in self.where)


@dataclass(frozen=True)
class _Token:
    kind: str  # word | string | number | op | punct | end
    text: str
    value: Value
    column: int


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[(),*])
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _parse_error(
                f"Invalid content. Lexical error at line 1, column {pos + 1}. "
                f'Encountered: "{text[pos]}"'
            )
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "string":
            value: Value = re.sub(r"\\(.)", r"\1", raw[1:-1])
            tokens.append(_Token("string", raw, value, pos + 1))
        elif kind == "number":
            tokens.append(_Token("number", raw, Decimal(raw), pos + 1))
        elif kind != "space":
            tokens.append(_Token(kind, raw, raw, pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "<EOF>", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def unexpected(self, token: _Token) -> QueryError:
        return _parse_error(f'Encountered " {token.text} " at line 1, column {token.column}.')

    def is_keyword(self, token: _Token, *words: str) -> bool:
        return token.kind == "word" and token.text.upper() in words

    def keyword(self, *words: str) -> str:
        token = self.next()
        if not self.is_keyword(token, *words):
            raise self.unexpected(token)
        return token.text.upper()

    def punct(self, char: str) -> None:
        token = self.next()
        if token.kind != "punct" or token.text != char:
            raise self.unexpected(token)

    def identifier(self) -> str:
        token = self.next()
        if token.kind != "word" or token.text.upper() in _UNSUPPORTED:
            raise self.unexpected(token)
        return token.text

    def integer(self) -> int:
        token = self.next()
        if token.kind != "number" or not isinstance(token.value, Decimal):
            raise self.unexpected(token)
        if token.value != token.value.to_integral_value():
            raise self.unexpected(token)
        return int(token.value)

    def literal(self) -> Value:
        token = self.next()
        if token.kind in ("string", "number"):
            return token.value
        if self.is_keyword(token, "TRUE", "FALSE"):
            return token.text.upper() == "TRUE"
        raise self.unexpected(token)


def parse(text: str) -> Query:
    """Parse one query or raise ``QueryError`` the way Intuit reports it."""
    if not text.strip():
        raise _parse_error("The query provided was empty")
    p = _Parser(text)
    p.keyword("SELECT")
    count = False
    fields: tuple[str, ...] | None = None
    token = p.peek()
    if p.is_keyword(token, "COUNT"):
        p.next()
        p.punct("(")
        p.punct("*")
        p.punct(")")
        count = True
    else:
        names = [_select_item(p)]
        while p.peek().kind == "punct" and p.peek().text == ",":
            p.next()
            names.append(_select_item(p))
        # Any ``*`` in the list already selects every field.
        fields = None if "*" in names else tuple(names)
    p.keyword("FROM")
    entity = p.identifier()

    where: list[Condition] = []
    if p.is_keyword(p.peek(), "WHERE"):
        p.next()
        where.append(_condition(p))
        while p.is_keyword(p.peek(), "AND"):
            p.next()
            where.append(_condition(p))

    order_by: list[tuple[str, bool]] = []
    if p.is_keyword(p.peek(), "ORDERBY", "ORDER"):
        if p.next().text.upper() == "ORDER":
            p.keyword("BY")
        while True:
            field = p.identifier()
            descending = False
            if p.is_keyword(p.peek(), "ASC", "DESC"):
                descending = p.next().text.upper() == "DESC"
            order_by.append((field, descending))
            if not (p.peek().kind == "punct" and p.peek().text == ","):
                break
            p.next()

    start_position, max_results = 1, DEFAULT_MAX_RESULTS
    seen: set[str] = set()
    while p.is_keyword(p.peek(), "STARTPOSITION", "MAXRESULTS"):
        word = p.next().text.upper()
        if word in seen:
            raise p.unexpected(p.tokens[p.pos - 1])
        seen.add(word)
        if word == "STARTPOSITION":
            start_position = p.integer()
            if start_position < 1:
                raise _validation_error(f"STARTPOSITION {start_position} must be 1 or more")
        else:
            max_results = p.integer()
            if max_results > MAX_RESULTS_LIMIT:
                raise _validation_error(
                    f"value {max_results} is too large. Max allowed value is {MAX_RESULTS_LIMIT}"
                )
            if max_results < 1:
                raise _validation_error(f"MAXRESULTS {max_results} must be 1 or more")

    end = p.next()
    if end.kind != "end":
        raise p.unexpected(end)
    return Query(
        entity=entity,
        count=count,
        fields=fields,
        where=tuple(where),
        order_by=tuple(order_by),
        start_position=start_position,
        max_results=max_results,
    )


def check_filterable(query: Query, entity: str) -> None:
    """Refuse a WHERE on a property ``entity`` does not mark filterable, as Intuit does."""
    allowed = FILTERABLE.get(entity.lower())
    if allowed is None:
        return
    for condition in query.where:
        if condition.field.lower() not in allowed:
            raise _validation_error(f"property '{condition.field}' is not queryable")


def _select_item(p: _Parser) -> str:
    """One entry of a select list: ``*`` or a field name."""
    token = p.peek()
    if token.kind == "punct" and token.text == "*":
        p.next()
        return "*"
    return p.identifier()


def _condition(p: _Parser) -> Condition:
    field = p.identifier()
    token = p.next()
    if token.kind == "op":
        if token.text not in _COMPARISONS:
            raise p.unexpected(token)
        return Condition(field, token.text, (p.literal(),))
    if p.is_keyword(token, "IN"):
        p.punct("(")
        values = [p.literal()]
        while p.peek().kind == "punct" and p.peek().text == ",":
            p.next()
            values.append(p.literal())
        p.punct(")")
        return Condition(field, "IN", tuple(values))
    if p.is_keyword(token, "LIKE"):
        pattern = p.next()
        if pattern.kind != "string":
            raise p.unexpected(pattern)
        return Condition(field, "LIKE", (pattern.value,))
    raise p.unexpected(token)


# --- evaluation -------------------------------------------------------------------


def resolve(row: Mapping[str, Any], path: str) -> Any:
    """Walk a dotted path case-insensitively; objects collapse to their scalar part."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        key = next((k for k in value if k.lower() == part.lower()), None)
        if key is None:
            return None
        value = value[key]
    if isinstance(value, Mapping):
        value = next((value[k] for k in _SCALAR_KEYS if k in value), None)
    return value


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _as_instant(value: Any, tz: tzinfo) -> datetime | None:
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tz)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _compare(left: Any, right: Value, tz: tzinfo) -> int | None:
    """-1/0/1 like cmp, or None when the two cannot be compared."""
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(right, str):
            right = right.lower() == "true"
        return None if left != right else 0
    left_num, right_num = _as_number(left), _as_number(right)
    if left_num is not None and right_num is not None:
        return _sign(left_num, right_num)
    left_at, right_at = _as_instant(left, tz), _as_instant(right, tz)
    if left_at is not None and right_at is not None:
        return _sign(left_at, right_at)
    return _sign(str(left).casefold(), str(right).casefold())


def _sign(left: Any, right: Any) -> int:
    return int(left > right) - int(left < right)


def _like(value: Any, pattern: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, str(value), re.IGNORECASE | re.DOTALL) is not None


def matches(row: Mapping[str, Any], condition: Condition, tz: tzinfo) -> bool:
    value = resolve(row, condition.field)
    if value is None:
        return False
    if condition.op == "LIKE":
        return _like(value, str(condition.values[0]))
    if condition.op == "IN":
        return any(_compare(value, v, tz) == 0 for v in condition.values)
    result = _compare(value, condition.values[0], tz)
    if result is None:
        return False
    return {
        "=": result == 0,
        "<": result < 0,
        ">": result > 0,
        "<=": result <= 0,
        ">=": result >= 0,
    }[condition.op]


def _sort_key(value: Any, tz: tzinfo) -> tuple[int, Any]:
    if value is None:
        return (3, "")
    number = _as_number(value)
    if number is not None:
        return (0, number)
    instant = _as_instant(value, tz)
    if instant is not None:
        return (1, instant.timestamp())
    return (2, str(value).casefold())


def select(query: Query, rows: Iterable[Mapping[str, Any]], tz: tzinfo) -> list[dict[str, Any]]:
    """Filter and order ``rows``; paging and projection are left to ``page``."""
    kept = [dict(r) for r in rows if all(matches(r, c, tz) for c in query.where)]
    kept.sort(key=lambda r: _sort_key(r.get("Id"), tz))
    for field, descending in reversed(query.order_by):
        present = [r for r in kept if resolve(r, field) is not None]
        missing = [r for r in kept if resolve(r, field) is None]
        present.sort(key=lambda r: _sort_key(resolve(r, field), tz), reverse=descending)
        kept = present + missing
    return kept


def page(query: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply STARTPOSITION/MAXRESULTS and the SELECT list."""
    window = rows[query.start_position - 1 : query.start_position - 1 + query.max_results]
    if query.fields is None:
        return window
    projected = []
    for row in window:
        out: dict[str, Any] = {}
        for field in query.fields:
            top = field.split(".")[0]
            key = next((k for k in row if k.lower() == top.lower()), None)
            if key is not None:
                out[key] = row[key]
        out["domain"] = row.get("domain", "QBO")
        out["sparse"] = True
        projected.append(out)
    return projected
