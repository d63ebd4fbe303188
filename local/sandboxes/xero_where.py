"""The ``where`` and ``order`` query parameters of Xero's Accounting API.

Xero filters GET collections with a .NET Dynamic-LINQ-like expression
(https://developer.xero.com/documentation/api/accounting/requests-and-responses):

* comparisons ``Name=="ABC"`` (``=`` works too), ``!=``, ``<``, ``<=``, ``>``, ``>=``;
* ``AND``/``&&``, ``OR``/``||``, ``NOT``/``!`` and parentheses;
* string methods ``Name.Contains("x")``, ``.StartsWith``, ``.EndsWith``,
  ``.ToLower()``, ``.ToUpper()``;
* literals: double-quoted strings, numbers, ``true``/``false``, ``null``,
  ``Guid("...")`` and ``DateTime(2015, 01, 01)`` (optionally with h, m, s);
* dotted paths into nested objects (``Contact.ContactID``).

Property names are matched case-insensitively, as Dynamic LINQ does; a name the
entity does not have is a parse error, which Xero reports as a
``QueryParseException`` (the caller builds that body). String comparisons are
case-insensitive: Xero's examples call the optimised filters case-insensitive
and the sandbox applies that to every string operator. A method called on a
missing optional element raises, as the docs warn ("you will get an exception
if any of the optional elements aren't set").

``order`` is ``Field [ASC|DESC]`` separated by commas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")

Value = str | Decimal | bool | datetime | None


class WhereError(Exception):
    """A filter Xero would refuse; the message is the one put in the 400 body."""


@dataclass(frozen=True)
class _Token:
    kind: str  # str | num | ident | op | punct | end
    text: str
    pos: int


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|<>|<=|>=|&&|\|\||=|<|>|!)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[().,])
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise WhereError(f"Syntax error at position {pos}: unexpected {text[pos : pos + 10]!r}")
        out.append(
            _Token(match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup))
        )
        pos = match.end()
    out.append(_Token("end", "", len(text)))
    return out


# --- AST -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    value: Value


@dataclass(frozen=True)
class _Path:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class _Call:
    target: Any  # _Path | _Call
    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Compare:
    left: Any
    op: str
    right: Any


@dataclass(frozen=True)
class _Bool:
    op: str  # and | or | not
    items: tuple[Any, ...]


_METHODS = {"contains": 1, "startswith": 1, "endswith": 1, "tolower": 0, "toupper": 0}
_COMPARE_OPS = {
    "==": "==",
    "=": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise WhereError(f"'{text}' expected at position {token.pos}")

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if (token.kind == "ident" and token.text.upper() in words) or (
            token.kind == "op" and token.text in words
        ):
            self.i += 1
            return True
        return False

    def parse(self) -> Any:
        node = self.or_expr()
        if self.peek().kind != "end":
            raise WhereError(f"Syntax error at position {self.peek().pos}")
        return node

    def or_expr(self) -> Any:
        items = [self.and_expr()]
        while self.keyword("OR", "||"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Bool("or", tuple(items))

    def and_expr(self) -> Any:
        items = [self.not_expr()]
        while self.keyword("AND", "&&"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _Bool("and", tuple(items))

    def not_expr(self) -> Any:
        if self.keyword("NOT", "!"):
            return _Bool("not", (self.not_expr(),))
        return self.comparison()

    def comparison(self) -> Any:
        left = self.operand()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARE_OPS:
            self.i += 1
            return _Compare(left, _COMPARE_OPS[token.text], self.operand())
        return left

    def operand(self) -> Any:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if token.kind == "str":
            return _Literal(_unescape(token.text[1:-1]))
        if token.kind == "num":
            return _Literal(Decimal(token.text))
        if token.kind != "ident":
            raise WhereError(f"Expression expected at position {token.pos}")
        word = token.text.lower()
        if word in ("true", "false"):
            return _Literal(word == "true")
        if word == "null":
            return _Literal(None)
        if word == "guid" and self.peek().text == "(":
            return _Literal(self.guid())
        if word == "datetime" and self.peek().text == "(":
            return _Literal(self.datetime_literal())
        return self.path(token.text)

    def path(self, first: str) -> Any:
        node: Any = _Path((first,))
        while self.peek().text == ".":
            self.i += 1
            name = self.take()
            if name.kind != "ident":
                raise WhereError(f"Identifier expected at position {name.pos}")
            if self.peek().text == "(":
                node = self.call(node, name.text)
            elif isinstance(node, _Path):
                node = _Path((*node.parts, name.text))
            else:
                raise WhereError(f"No property or field '{name.text}' exists in type 'String'")
        return node

    def call(self, target: Any, method: str) -> _Call:
        arity = _METHODS.get(method.lower())
        if arity is None:
            raise WhereError(f"No applicable method '{method}' exists in type 'String'")
        self.expect("(")
        args: list[Any] = []
        if self.peek().text != ")":
            args.append(self.operand())
            while self.peek().text == ",":
                self.i += 1
                args.append(self.operand())
        self.expect(")")
        if len(args) != arity:
            raise WhereError(f"No applicable method '{method}' exists in type 'String'")
        return _Call(target, method.lower(), tuple(args))

    def guid(self) -> str:
        self.expect("(")
        token = self.take()
        if token.kind != "str":
            raise WhereError(f"String expected at position {token.pos}")
        self.expect(")")
        return token.text[1:-1].lower()

    def datetime_literal(self) -> datetime:
        self.expect("(")
        numbers: list[int] = []
        while True:
            token = self.take()
            if token.kind != "num" or not token.text.lstrip("-").isdigit():
                raise WhereError(f"Integer expected at position {token.pos}")
            numbers.append(int(token.text))
            if self.peek().text != ",":
                break
            self.i += 1
        self.expect(")")
        if len(numbers) not in (3, 6):
            raise WhereError("DateTime takes (year, month, day) or (year, month, day, h, m, s)")
        year, month, day, *clock = numbers
        hour, minute, second = clock or [0, 0, 0]
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as exc:
            raise WhereError(str(exc)) from exc


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@dataclass(frozen=True)
class Where:
    """A parsed filter; ``matches`` tests one rendered object."""

    root: Any
    entity: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        result = _eval(self.root, obj, self.entity)
        if not isinstance(result, bool):
            raise WhereError("Expression of type 'Boolean' expected")
        return result


def parse(text: str, entity: str, known: Callable[[str], bool]) -> Where:
    """Parse ``text`` for ``entity`` (a type name such as ``Contact``).

    ``known(name)`` says whether the entity has that top-level property; a path
    starting elsewhere is refused at parse time, like Dynamic LINQ does.
    """
    root = _Parser(text).parse()
    _check_paths(root, entity, known)
    return Where(root, entity)


def _check_paths(node: Any, entity: str, known: Callable[[str], bool]) -> None:
    if isinstance(node, _Path):
        if not known(node.parts[0]):
            raise WhereError(f"No property or field '{node.parts[0]}' exists in type '{entity}'")
    elif isinstance(node, _Call):
        _check_paths(node.target, entity, known)
        for arg in node.args:
            _check_paths(arg, entity, known)
    elif isinstance(node, _Compare):
        _check_paths(node.left, entity, known)
        _check_paths(node.right, entity, known)
    elif isinstance(node, _Bool):
        for item in node.items:
            _check_paths(item, entity, known)


def _lookup(obj: Mapping[str, Any], key: str) -> Any:
    for name, value in obj.items():
        if name.lower() == key.lower():
            return value
    return None


def field_value(obj: Mapping[str, Any], parts: tuple[str, ...]) -> Value:
    """A property of a rendered object as a comparable value (MS dates parsed)."""
    current: Any = obj
    for part in parts:
        if not isinstance(current, Mapping):
            return None
        current = _lookup(current, part)
    if isinstance(current, bool) or current is None:
        return current
    if isinstance(current, int | float | Decimal):
        return Decimal(str(current))
    if isinstance(current, str):
        match = MS_DATE.match(current)
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        return current
    raise WhereError(f"Property '{'.'.join(parts)}' cannot be compared")


def _eval(node: Any, obj: Mapping[str, Any], entity: str) -> Value:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Path):
        return field_value(obj, node.parts)
    if isinstance(node, _Call):
        return _call(node, obj, entity)
    if isinstance(node, _Compare):
        return _compare(_eval(node.left, obj, entity), node.op, _eval(node.right, obj, entity))
    assert isinstance(node, _Bool)
    # Short-circuits like C#: EmailAddress!=null&&EmailAddress.StartsWith("x") is safe.
    for item in node.items:
        value = _eval(item, obj, entity)
        if not isinstance(value, bool):
            raise WhereError(f"Operator '{node.op}' needs Boolean operands")
        if node.op == "not":
            return not value
        if value is (node.op == "or"):
            return value
    return node.op == "and"


def _call(node: _Call, obj: Mapping[str, Any], entity: str) -> Value:
    target = _eval(node.target, obj, entity)
    if target is None:
        raise WhereError("Object reference not set to an instance of an object.")
    if not isinstance(target, str):
        raise WhereError(f"No applicable method '{node.method}' exists in type '{entity}'")
    if node.method == "tolower":
        return target.lower()
    if node.method == "toupper":
        return target.upper()
    arg = _eval(node.args[0], obj, entity)
    if not isinstance(arg, str):
        raise WhereError(f"No applicable method '{node.method}' exists in type 'String'")
    subject, needle = target.casefold(), arg.casefold()
    if node.method == "contains":
        return needle in subject
    if node.method == "startswith":
        return subject.startswith(needle)
    return subject.endswith(needle)


def _compare(left: Value, op: str, right: Value) -> bool:
    if left is None or right is None:
        if op == "==":
            return left is None and right is None
        if op == "!=":
            return not (left is None and right is None)
        return False
    a, b = _comparable(left, right)
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if isinstance(a, bool):
        raise WhereError(f"Operator '{op}' incompatible with operand type 'Boolean'")
    result: bool = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return result


def _comparable(left: Value, right: Value) -> tuple[Any, Any]:
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, bool) and isinstance(right, bool):
            return left, right
    elif isinstance(left, str) and isinstance(right, str):
        return left.casefold(), right.casefold()
    elif (isinstance(left, Decimal) and isinstance(right, Decimal)) or (
        isinstance(left, datetime) and isinstance(right, datetime)
    ):
        return left, right
    raise WhereError(
        f"Operator incompatible with operand types '{type(left).__name__}' and "
        f"'{type(right).__name__}'"
    )


def parse_order(
    text: str, entity: str, known: Callable[[str], bool]
) -> list[tuple[tuple[str, ...], bool]]:
    """``Name ASC, UpdatedDateUTC DESC`` -> [(path, descending), ...]."""
    keys: list[tuple[tuple[str, ...], bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise WhereError(f"Invalid order clause {part.strip()!r}")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise WhereError(f"Invalid order direction {words[1]!r}")
        path = tuple(words[0].split("."))
        if not known(path[0]):
            raise WhereError(f"No property or field '{path[0]}' exists in type '{entity}'")
        keys.append((path, direction == "DESC"))
    return keys


def sort_key(value: Value) -> tuple[int, Any]:
    """Nulls first (as SQL Server orders ascending), strings case-insensitively."""
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, value)
