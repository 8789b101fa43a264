"""``flask2fastapi port``: the starting point of a port, written from the Flask view.

For one endpoint of the Flask app it writes a FastAPI route with the same
rules (each converter a typed path parameter), methods and endpoint name, the
dependencies the app's ports already use, and the view's source as a comment
to translate; and a starter shadow cases file with a case for each variable of
the rule and the values its converter refuses.

Nothing here does I/O: it reads the two apps in memory and returns texts.
"""

from __future__ import annotations

import difflib
import inspect
import json
import keyword
import re
import sys
import textwrap
import typing
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from flask import Flask
from werkzeug.routing import Rule
from werkzeug.routing.converters import (
    AnyConverter,
    BaseConverter,
    FloatConverter,
    IntegerConverter,
    PathConverter,
    UnicodeConverter,
    UUIDConverter,
)

from bridge._exceptions import ConfigurationError
from bridge._serving.routing import flask_routes

# A Flask rule variable: ``<name>``, ``<int:name>``, ``<any(a, b):name>``.
_VARIABLE = re.compile(r"<(?:(?P<converter>[^<>:(]+)(?P<args>\([^<>]*\))?:)?(?P<name>[^<>:]+)>")

# Who is asking, in a view's source: a decorator or a name that needs a user.
_NEEDS_USER = re.compile(
    r"login_required|admin_required|auth_required|jwt_required|current_user|g\.user"
)
# A dependency that says who is asking, by its type's or its function's name.
_WHO = re.compile(r"user|login|logged|auth|token|jwt", re.IGNORECASE)
_USES_SESSION = re.compile(r"(?<![\w.])session\s*[\[.]")  # Flask's, not db.session
_USES_REQUEST = re.compile(r"(?<![\w.])request\.")
_READS_BODY = re.compile(r"get_json|get_data|(?<![\w.])request\.(?:json|form|data|files|stream)")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A query argument the view reads: request.args.get("q", type=int), request.args["q"],
# or the port's arg(request, "q", type=int).
_QUERY_ARG = re.compile(
    r"""(?:request\.args\.get\(|request\.args\[|\barg\(\s*request\s*,)\s*"""
    r"""["'](?P<name>[^"']+)["'](?P<rest>[^)\]\n]*)"""
)
_ARG_TYPES = {"int": ("1", "x"), "float": ("1.5", "x")}

#: The ``user`` of the cases that need one: replace it with an account of your data.
CASE_USER = "user@example.com"


@dataclass(frozen=True)
class Parameter:
    """One variable of a Flask rule, as a FastAPI path parameter."""

    name: str
    annotation: str  # the Python type, as source
    path_part: str  # ``{name}``, ``{name:int}``, ...
    valid: tuple[str, ...]  # values the Flask converter takes
    refused: tuple[str, ...]  # values it refuses: its routing 404
    note: str | None = None  # what the FastAPI path does not reproduce


@dataclass(frozen=True)
class Dependency:
    """A route parameter type the app's ports use, and where to import it from."""

    module: str
    name: str
    call: str = ""  # the dependency function's name, such as "login_required"


@dataclass(frozen=True)
class PortDependencies:
    """What a new port takes, as the app's existing ports do."""

    database: str = "DbSession"  # or "DbConnection"
    users: tuple[Dependency, ...] = ()  # the most used first
    session_cookie: bool = True


@dataclass(frozen=True)
class Scaffold:
    """The texts ``flask2fastapi port`` writes."""

    endpoint: str
    route: str  # a Python module with an ``APIRouter`` named ``router``
    cases: str  # a shadow cases file, JSON Lines


def scaffold_port(flask_app: Flask, endpoint: str, fastapi_app: Any = None) -> Scaffold:
    """The port of *endpoint*; the dependencies are read from *fastapi_app*'s routes.

    Raises :class:`~bridge.ConfigurationError` naming the closest endpoints
    when the Flask app has no such endpoint.
    """
    rules = endpoint_rules(flask_app, endpoint)
    view = flask_app.view_functions[endpoint]
    source, where = _view_source(view)
    dependencies = port_dependencies(fastapi_app)
    needs_user = bool(_NEEDS_USER.search(source))
    route = _route_module(endpoint, rules, source, where, dependencies, needs_user)
    use = ViewUse(
        needs_user=needs_user,
        reads_body=bool(_READS_BODY.search(source)),
        query=query_arguments(source),
    )
    return Scaffold(endpoint, route, _cases_text(rules, use))


def endpoint_rules(flask_app: Flask, endpoint: str) -> list[tuple[list[str], Rule]]:
    """The rules of *endpoint* with their methods, as ``flask2fastapi routes`` lists them."""
    rules: dict[int, tuple[list[str], Rule]] = {}  # Rule is not hashable: by identity
    for method, rule in flask_routes(flask_app.url_map):
        if rule.endpoint == endpoint:
            rules.setdefault(id(rule), ([], rule))[0].append(method)
    if not rules:
        names = sorted({rule.endpoint for rule in flask_app.url_map.iter_rules()})
        close = difflib.get_close_matches(endpoint, names, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"endpoints: {', '.join(names[:10])}"
        raise ConfigurationError(
            f"the Flask app has no endpoint {endpoint!r}; {hint} "
            "(flask2fastapi routes lists them all)"
        )
    return list(rules.values())


# -- Rule variables ---------------------------------------------------------------


def parameters(rule: Rule) -> list[Parameter]:
    """The rule's variables in the order they appear, as path parameters."""
    found = []
    for match in _VARIABLE.finditer(rule.rule):
        name = match.group("name")
        converter = rule._converters[name]
        found.append(_parameter(name, converter, match.group("args")))
    return found


def _parameter(name: str, converter: BaseConverter, args: str | None) -> Parameter:
    """The parameter for *converter*, with only the sample values its regex agrees with."""
    shape = _by_converter(name, converter)
    note = shape.note
    if args and note is None:
        note = (
            f"Flask's converter takes {args}: FastAPI checks only the type, so give the "
            "values it refuses the legacy answer"
        )
    return replace(
        shape,
        valid=tuple(v for v in shape.valid if _fits(converter, v)),
        refused=tuple(v for v in shape.refused if not _fits(converter, v)),
        note=note,
    )


def _by_converter(name: str, converter: BaseConverter) -> Parameter:
    kind = type(converter)
    if issubclass(kind, IntegerConverter):
        return Parameter(name, "int", f"{{{name}:int}}", ("1",), ("x", "1.5"))
    if issubclass(kind, FloatConverter):
        return Parameter(name, "float", f"{{{name}:float}}", ("1.5",), ("x",))
    if issubclass(kind, UUIDConverter):
        zero = "00000000-0000-0000-0000-000000000000"
        return Parameter(name, "uuid.UUID", f"{{{name}:uuid}}", (zero,), ("not-a-uuid",))
    if issubclass(kind, PathConverter):
        return Parameter(name, "str", f"{{{name}:path}}", ("x", "x/y"), ())
    if issubclass(kind, AnyConverter):
        items = tuple(sorted(getattr(converter, "items", ())))
        literal = f"Literal[{', '.join(_str(item) for item in items)}]"
        note = (
            "a value outside any() matches no Flask rule, so the hybrid sends it here and "
            "FastAPI refuses it as invalid (400 under install_error_envelope, else 422) "
            "where Flask answers 404: answer those with 404"
        )
        refused = ("not-" + "-".join(items),)
        return Parameter(name, literal, f"{{{name}}}", items, refused, note)
    if issubclass(kind, UnicodeConverter):
        return Parameter(name, "str", f"{{{name}}}", ("x", "caf%C3%A9"), ())
    note = f"the custom converter {kind.__name__} is read as a string: convert it here"
    return Parameter(name, "str", f"{{{name}}}", (), (), note)


def _fits(converter: BaseConverter, value: str) -> bool:
    return re.fullmatch(converter.regex, unquote(value)) is not None


def fastapi_path(rule: Rule) -> str:
    """The FastAPI path of a Flask rule: ``/api/products/{product_id:int}``."""
    parts = {p.name: p.path_part for p in parameters(rule)}
    return _VARIABLE.sub(lambda m: parts[m.group("name")], rule.rule)


def _concrete(rule: Rule, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values[m.group("name")], rule.rule)


# -- Dependencies of the app's ports ----------------------------------------------


def port_dependencies(fastapi_app: Any) -> PortDependencies:
    """Read what the ports of *fastapi_app* take; the defaults when there is none.

    The database dependency is the one most ports use (:data:`~bridge.DbSession`
    when tied or none does). The user dependencies are the app's own
    ``Annotated[..., Depends(f)]`` types that say who is asking: the type's
    name or *f*'s says "user", "login", "auth", "token" or "jwt"
    (``CurrentUser``, or ``LoggedIn`` over ``FlaskLogin.login_required``).
    """
    if fastapi_app is None:
        return PortDependencies()
    database: Counter[str] = Counter()
    users: Counter[Dependency] = Counter()
    for endpoint, hint in _route_hints(fastapi_app):
        named = _bridge_name(hint)
        if named is not None:
            database[named] += 1
            continue
        alias = _alias(hint, endpoint)
        if alias is not None and _WHO.search(f"{alias.name} {alias.call}"):
            users[alias] += 1
    chosen = "DbConnection" if database["DbConnection"] > database["DbSession"] else "DbSession"
    return PortDependencies(
        database=chosen,
        users=tuple(user for user, _ in users.most_common()),
        session_cookie=_has_session_middleware(fastapi_app),
    )


def _route_hints(fastapi_app: Any) -> Iterator[tuple[Any, Any]]:
    """Each route function with each of its parameters' annotations."""
    for endpoint in _endpoints(getattr(fastapi_app, "routes", ())):
        try:
            hints = typing.get_type_hints(endpoint, include_extras=True)
        except Exception:  # an annotation we cannot resolve tells us nothing
            continue
        yield from ((endpoint, hint) for name, hint in hints.items() if name != "return")


def _endpoints(routes: Iterable[Any]) -> Iterator[Any]:
    """The route functions of a route list, through included routers and mounts."""
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None and hasattr(route, "dependant"):
            yield endpoint
        inner = getattr(route, "original_router", route)  # FastAPI's included router
        yield from _endpoints(getattr(inner, "routes", None) or ())


def _bridge_name(hint: Any) -> str | None:
    from bridge._porting.asyncdb import DbConnection, DbSession

    if hint == DbSession:
        return "DbSession"
    if hint == DbConnection:
        return "DbConnection"
    return None


def _alias(hint: Any, endpoint: Any) -> Dependency | None:
    """Where an ``Annotated[..., Depends(f)]`` hint has a name to import it by: the
    module of *f*, else the route's own module (*f* may be a toolkit method)."""
    if typing.get_origin(hint) is not typing.Annotated:
        return None
    for extra in hint.__metadata__:
        call = getattr(extra, "dependency", None)
        if call is None:
            continue
        for module_name in (getattr(call, "__module__", None), endpoint.__module__):
            module = sys.modules.get(module_name or "")
            if module is None or module.__name__.split(".")[0] == "bridge":
                continue  # the toolkit's modules are private: never import from them
            for name, value in vars(module).items():
                if not name.startswith("_") and (value is hint or value == hint):
                    return Dependency(module.__name__, name, getattr(call, "__name__", ""))
    return None


def _has_session_middleware(fastapi_app: Any) -> bool:
    from bridge._porting.sessions import FlaskSessionMiddleware

    middleware = getattr(fastapi_app, "user_middleware", ())
    return any(getattr(m, "cls", None) is FlaskSessionMiddleware for m in middleware)


# -- The route module ---------------------------------------------------------------


def _view_source(view: Any) -> tuple[str, str]:
    """The view's source with its decorators, and ``file:line``; a ``View``'s class."""
    view = getattr(view, "view_class", view)  # as_view() wraps the class in a function
    try:
        lines, start = inspect.getsourcelines(view)  # unwraps @wraps decorators
        path = inspect.getsourcefile(inspect.unwrap(view)) or "?"
    except (OSError, TypeError):
        return "", "source not available"
    return textwrap.dedent("".join(lines)), f"{_relative(path)}:{start}"


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _route_module(
    endpoint: str,
    rules: list[tuple[list[str], Rule]],
    source: str,
    where: str,
    dependencies: PortDependencies,
    needs_user: bool,
) -> str:
    params, defaults = _all_parameters([rule for _, rule in rules])
    uses_request = bool(_USES_REQUEST.search(source) or _USES_SESSION.search(source))
    user = _user_for(source, dependencies.users) if needs_user else None
    signature = _signature(params, defaults, uses_request, user, dependencies.database)
    imports = _imports(params, uses_request, [dependencies.database], user)
    decorators = "".join(_decorator(methods, rule, endpoint) for methods, rule in rules)
    notes = _notes(params, defaults, source, dependencies)
    keys = "\n".join(
        f'    "{method} {rule.rule}" = "async"' for methods, rule in rules for method in methods
    )
    function = _function_name(endpoint)
    body = _commented(source, where)
    return (
        f'"""Port of {endpoint}.\n\n'
        "Fill in the body, include ``router`` in the FastAPI app, run the shadow cases,\n"
        "then send the route here in migration.toml::\n\n"
        f'{keys}\n"""\n\n'
        f"{imports}\n\nrouter = APIRouter()\n\n\n"
        f"{decorators}{_def(function, signature)}"
        f"{_comment(notes)}{body}"
        f'    raise NotImplementedError("port {endpoint}: translate the legacy view above")\n'
    )


def _signature(
    params: list[Parameter],
    defaults: dict[str, str],
    uses_request: bool,
    user: Dependency | None,
    database: str,
) -> list[str]:
    """Path parameters, the request, the user, the database, then defaulted parameters."""
    signature = [f"{p.name}: {p.annotation}" for p in params if p.name not in defaults]
    if uses_request:
        signature.append("request: Request")
    if user is not None:
        signature.append(f"user: {user.name}")
    signature.append(f"{'connection' if database == 'DbConnection' else 'session'}: {database}")
    signature += [
        f"{p.name}: {p.annotation} = {defaults[p.name]}" for p in params if p.name in defaults
    ]
    return signature


def _notes(
    params: list[Parameter], defaults: dict[str, str], source: str, dependencies: PortDependencies
) -> list[str]:
    """What the generated route cannot do as the view does, to say above its body."""
    notes = [f"{p.name}: {p.note}" for p in params if p.note]
    notes += [
        f"{name}: where a rule lacks it, Flask gives it {value} but FastAPI reads it from "
        "the query string: do not let a query argument set it"
        for name, value in defaults.items()
    ]
    if _USES_SESSION.search(source) and not dependencies.session_cookie:
        notes.append(
            "The view uses Flask's session: add FlaskSessionMiddleware to the FastAPI app "
            "so that request.session is that cookie."
        )
    return notes


def _all_parameters(rules: list[Rule]) -> tuple[list[Parameter], dict[str, str]]:
    """The variables of every rule of an endpoint, and the defaults of those that
    some rule lacks: its ``defaults=`` value, else ``None``."""
    params: dict[str, Parameter] = {}
    for rule in rules:
        params.update((p.name, p) for p in parameters(rule) if p.name not in params)
    defaults: dict[str, str] = {}
    for rule in rules:
        for name in set(params) - {p.name for p in parameters(rule)}:
            value = (rule.defaults or {}).get(name)
            defaults.setdefault(name, repr(value))
    for name, value in defaults.items():
        if value == "None":
            params[name] = replace(params[name], annotation=f"{params[name].annotation} | None")
    return list(params.values()), defaults


def _def(function: str, signature: list[str]) -> str:
    line = f"async def {function}({', '.join(signature)}) -> Response:\n"
    if len(line) <= 100:
        return line
    params = "".join(f"    {parameter},\n" for parameter in signature)
    return f"async def {function}(\n{params}) -> Response:\n"


def _imports(
    params: list[Parameter], uses_request: bool, bridge_names: list[str], user: Dependency | None
) -> str:
    standard = []
    if any(p.annotation == "uuid.UUID" for p in params):
        standard.append("import uuid")
    if any(p.annotation.startswith("Literal[") for p in params):
        standard.append("from typing import Literal")
    fastapi = ["APIRouter", "Request"] if uses_request else ["APIRouter"]
    third = [
        f"from fastapi import {', '.join(fastapi)}",
        "from starlette.responses import Response",
    ]
    groups = [standard, third, [f"from bridge import {', '.join(bridge_names)}"]]
    if user is not None:
        groups.append([f"from {user.module} import {user.name}"])
    return "\n\n".join("\n".join(group) for group in groups if group)


def _user_for(source: str, users: tuple[Dependency, ...]) -> Dependency | None:
    """The user dependency that runs the view's decorator (``FlaskLogin.login_required``
    for ``@login_required``), else one whose name starts as a decorator does
    (``AdminUser`` for ``@admin_required``), else the one most ports use."""
    words = set(re.findall(r"@(?:\w+\.)*(\w+)", source))
    for user in users:
        if user.call in words:
            return user
    for user in users:
        first = (re.findall(r"[A-Z]?[a-z]+", user.name) or [user.name])[0].lower()
        if first != "current" and any(word.startswith(first) for word in words):
            return user
    return users[0] if users else None


def _decorator(methods: list[str], rule: Rule, endpoint: str) -> str:
    path = fastapi_path(rule)
    if len(methods) == 1:
        return f"@router.{methods[0].lower()}({_str(path)}, name={_str(endpoint)})\n"
    listed = ", ".join(_str(method) for method in methods)
    return f"@router.api_route({_str(path)}, methods=[{listed}], name={_str(endpoint)})\n"


def _str(text: str) -> str:
    """A string literal as ruff format writes it."""
    return json.dumps(text, ensure_ascii=False)


def _function_name(endpoint: str) -> str:
    name = re.sub(r"\W", "_", endpoint.rpartition(".")[2]) or "view"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"port_{name}"
    return name


def _comment(notes: list[str]) -> str:
    wrapped = (textwrap.wrap(note, 90) for note in notes)
    return "".join(f"    # {line}\n" for lines in wrapped for line in lines)


def _commented(source: str, where: str) -> str:
    if not source:
        return f"    # The legacy view: {where}.\n"
    lines = [f"    # The legacy view ({where}), to translate:", "    #"]
    lines += [f"    #     {line}".rstrip() for line in source.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


# -- The cases file -----------------------------------------------------------------


@dataclass(frozen=True)
class ViewUse:
    """What the view's source shows it reads, which its cases exercise."""

    needs_user: bool = False
    reads_body: bool = False
    query: tuple[tuple[str, str], ...] = ()  # (name, "int" | "float" | "str")


def query_arguments(source: str) -> tuple[tuple[str, str], ...]:
    """The query arguments *source* reads, with the type it converts each to."""
    found: dict[str, str] = {}
    for match in _QUERY_ARG.finditer(source):
        kind = re.search(r"\btype\s*=\s*(int|float)\b", match.group("rest"))
        found.setdefault(match.group("name"), kind.group(1) if kind else "str")
    return tuple(found.items())


def _cases_text(rules: Iterable[tuple[list[str], Rule]], use: ViewUse) -> str:
    cases = [
        case
        for methods, rule in rules
        for method in methods
        for case in _rule_cases(method, rule, use)
    ]
    return "".join(json.dumps(case) + "\n" for case in cases)


def _rule_cases(method: str, rule: Rule, use: ViewUse) -> Iterator[dict[str, Any]]:
    """A case with sample values, one per value a variable takes or refuses, a
    missing row, each query argument, then logged out and a body that is not
    JSON where they apply."""
    params = parameters(rule)
    base = {p.name: (p.valid or ("x",))[0] for p in params}
    who = {"user": CASE_USER} if use.needs_user else {}
    sends_body = use.reads_body and method in _WRITES
    body: dict[str, Any] = {"json": {}} if sends_body else {}
    path = _concrete(rule, base)
    yield {"name": f"{method} {rule.rule}", "method": method, "path": path, **who, **body}
    yield from _variable_cases(method, rule, params, base, {**who, **body})
    for name, kind in use.query:
        good, bad = _ARG_TYPES.get(kind, ("x", None))
        for value in (good, bad) if bad else (good,):
            query = f"?{name}={value}"
            yield {"name": query, "method": method, "path": path + query, **who, **body}
    if use.needs_user:
        yield {"name": "logged out", "method": method, "path": path, **body}
    if sends_body:
        yield {**_not_json(method, rule, base), **who}


def _variable_cases(
    method: str, rule: Rule, params: list[Parameter], base: dict[str, str], extra: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    for p in params:
        for label, values in (("takes", p.valid[1:]), ("refuses", p.refused)):
            for value in values:
                path = _concrete(rule, {**base, p.name: value})
                yield {"name": f"{p.name} {label} {value}", "method": method, "path": path, **extra}
        if p.annotation == "int":
            path = _concrete(rule, {**base, p.name: "999999999"})
            yield {"name": f"no such {p.name}", "method": method, "path": path, **extra}


def _not_json(method: str, rule: Rule, base: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "not json",
        "method": method,
        "path": _concrete(rule, base),
        "headers": {"Content-Type": "text/plain"},
        "body": "x",
    }
