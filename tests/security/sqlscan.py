"""Find SQL built from strings: an AST scan of Python source.

A *sink* is a call that takes SQL text: ``text(…)`` / ``sa.text(…)``, ``literal_column(…)``,
``DDL(…)``, ``….execute(…)``, ``….executemany(…)``, ``….executescript(…)``,
``….exec_driver_sql(…)`` (the first argument). Its SQL is *string-built* when it is (or a name
in scope is assigned) an f-string with a replacement field, ``%`` formatting, ``.format(…)``,
``str.join`` of something not literal, or a ``+`` concatenation that has a non-literal part.
A parameter of the enclosing function is followed to every call of that function in the same
file, and each argument passed for it is judged the same way.

Literals are string constants, f-strings without fields, concatenations and conditional
expressions of literals, and names bound only to literals (in the function or the module).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SQL_FUNCTIONS = frozenset({"text", "literal_column", "DDL"})
SQL_METHODS = frozenset(
    {"execute", "executemany", "executescript", "exec_driver_sql", "text", "literal_column"}
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    sql: str
    """The SQL argument's source (``ast.unparse``)."""
    function: ast.FunctionDef | ast.AsyncFunctionDef | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: string-built SQL {self.sql}"


class _Scope:
    """Assignments of one function (or the module) and the module around it."""

    def __init__(self, module: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> None:
        self.module = module
        self.function = function

    def _assigned(self, body: ast.AST, name: str, *, top_level_only: bool) -> list[ast.expr]:
        values: list[ast.expr] = []
        nodes = body.body if top_level_only and isinstance(body, ast.Module) else ast.walk(body)
        for node in nodes:
            if isinstance(node, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    values.append(node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                if isinstance(node.target, ast.Name) and node.target.id == name:
                    values.append(node.value)
            elif (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
            ):
                # ``sql += x`` appends ``x`` to a string: judged as ``"" + x``.
                values.append(ast.BinOp(left=ast.Constant(value=""), op=node.op, right=node.value))
        return values

    def values_of(self, name: str) -> list[ast.expr] | None:
        """What ``name`` is assigned in the function, else at module level; None when unknown."""
        if self.function is not None:
            found = self._assigned(self.function, name, top_level_only=False)
            if found:
                return found
            if name in _parameters(self.function):
                return None
        found = self._assigned(self.module, name, top_level_only=True)
        return found or None


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = function.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class Judge:
    def __init__(self, scope: _Scope) -> None:
        self.scope = scope
        self._seen: set[str] = set()

    def literal(self, node: ast.expr) -> bool:
        if _is_str(node):
            return True
        if isinstance(node, ast.JoinedStr):
            return not any(isinstance(v, ast.FormattedValue) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.literal(node.left) and self.literal(node.right)
        if isinstance(node, ast.IfExp):
            return self.literal(node.body) and self.literal(node.orelse)
        if isinstance(node, ast.Name):
            return self._through_name(node, all, self.literal)
        return False

    def stringy(self, node: ast.expr) -> bool:
        """A string or string-built expression (as far as the source shows)."""
        return self.literal(node) or self.built(node)

    def built(self, node: ast.expr) -> bool:
        """True when ``node`` builds a string from parts that are not literals."""
        if isinstance(node, ast.JoinedStr):
            return any(isinstance(v, ast.FormattedValue) for v in node.values)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                if self.built(node.left) or self.built(node.right):
                    return True
                either_str = self.stringy(node.left) or self.stringy(node.right)
                return either_str and not (self.literal(node.left) and self.literal(node.right))
            if isinstance(node.op, ast.Mod):
                return self.stringy(node.left) and not self.literal(node.right)
            return False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format" and self.stringy(node.func.value):
                return True
            if node.func.attr == "join" and self.stringy(node.func.value):
                return not all(self.literal(a) for a in node.args)
            return False
        if isinstance(node, ast.IfExp):
            return self.built(node.body) or self.built(node.orelse)
        if isinstance(node, ast.Name):
            return self._through_name(node, any, self.built)
        return False

    def _through_name(
        self, node: ast.Name, combine: Callable[[Iterable[bool]], bool], test: Callable[[ast.expr], bool]
    ) -> bool:
        """``test`` on every value the name is assigned in scope, combined; False for a name
        with no known value or one already being followed (a cycle)."""
        if node.id in self._seen:
            return False
        values = self.scope.values_of(node.id)
        if values is None:
            return False
        self._seen.add(node.id)
        try:
            return combine(test(v) for v in values)
        finally:
            self._seen.discard(node.id)


def _sql_argument(call: ast.Call) -> ast.expr | None:
    func = call.func
    named = (isinstance(func, ast.Name) and func.id in SQL_FUNCTIONS) or (
        isinstance(func, ast.Attribute) and func.attr in SQL_METHODS
    )
    if not named:
        return None
    if call.args:
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in {"text", "statement", "sql", "sql_script", "operation"}:
            return keyword.value
    return None


def _enclosing(module: ast.Module) -> dict[int, ast.FunctionDef | ast.AsyncFunctionDef]:
    """id(call) → its innermost enclosing function (``ast.walk`` reaches outer functions first)."""
    owner: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    functions = [n for n in ast.walk(module) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                owner[id(node)] = function  # inner functions are walked later and win
    return owner


def _calls_of(module: ast.Module, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == name) or (
                isinstance(func, ast.Attribute) and func.attr == name
            ):
                yield node


def scan_source(source: str, path: str) -> list[Finding]:
    module = ast.parse(source, filename=path)
    owner = _enclosing(module)
    findings: list[Finding] = []
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        sql = _sql_argument(node)
        if sql is None:
            continue
        function = owner.get(id(node))
        judge = Judge(_Scope(module, function))
        if judge.built(sql):
            findings.append(Finding(path, node.lineno, ast.unparse(sql), function))
            continue
        # A parameter: judge what every caller in this file passes for it.
        if isinstance(sql, ast.Name) and function is not None and sql.id in _parameters(function):
            if _Scope(module, function)._assigned(function, sql.id, top_level_only=False):
                continue
            index = _parameters(function).index(sql.id)
            for call in _calls_of(module, function.name):
                passed = next((k.value for k in call.keywords if k.arg == sql.id), None)
                if passed is None and index < len(call.args):
                    passed = call.args[index]
                if passed is not None and Judge(_Scope(module, owner.get(id(call)))).built(passed):
                    findings.append(Finding(path, call.lineno, ast.unparse(passed), owner.get(id(call))))
    return sorted(findings, key=lambda f: f.line)


def scan_tree(root: Path, package: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted(package.rglob("*.py")):
        findings.extend(scan_source(path.read_text(), str(path.relative_to(root))))
    return findings
