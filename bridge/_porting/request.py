"""Flask's request idioms, with Flask's answers, for ported routes.

A port is drop-in only if bad input gets the legacy answer. FastAPI's own
parsing answers 422 with ``{"detail": [...]}``; these helpers answer as Flask
does instead:

* :func:`get_json` is ``request.get_json()``: 415 when the content type is not
  JSON, 400 when the body does not parse or nests too deep for the parser
  (where Flask's own lets ``RecursionError`` out, a 500);
* :func:`arg` is ``request.args.get(name, default, type=...)``: a value that
  does not convert gives the default, as Werkzeug's ``MultiDict.get`` does;
* :func:`args` is ``request.args`` as a plain mapping, first value first;
* :func:`url_for` is Flask's ``url_for`` inside a request: a path with the
  script root, not an absolute URL; values that are not path parameters go to
  the query string, and the path is quoted as Werkzeug quotes it;
  ``_external=True`` prefixes the scheme and host the request came with;
* :func:`arg_list` is ``request.args.getlist(name, type=...)``;
* :func:`form` and :func:`files` are ``request.form`` and ``request.files``,
  parsed by Werkzeug's own form parser with the Flask app's
  ``MAX_CONTENT_LENGTH``, ``MAX_FORM_MEMORY_SIZE`` and ``MAX_FORM_PARTS``
  (413 past them, as Flask answers);
* :func:`remote_addr` is ``request.remote_addr``.

The limits are read from the Flask app the hybrid sets on the FastAPI app
(``app.state.flask_app``); without one, Flask's defaults apply.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode
from weakref import WeakKeyDictionary

from fastapi import HTTPException, Request
from starlette.routing import NoMatchFound
from werkzeug.datastructures import FileStorage, ImmutableMultiDict, iter_multi_items
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.sansio.utils import get_content_length
from werkzeug.wrappers import Request as WerkzeugRequest

from bridge._exceptions import URLForError
from bridge._media import is_json
from bridge._porting.flask_context import environ_of, flask_app_of

T = TypeVar("T")

# Werkzeug's words when get_json() meets another content type.
_NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
)


async def get_json(request: Request, *, force: bool = False, silent: bool = False) -> Any:
    """The JSON body, parsed as Flask's ``request.get_json(force=force, silent=silent)``.

    Without *force*, a body whose content type is not JSON is a 415; with
    *silent*, it is ``None`` instead, and so is a body that does not parse. A
    body declared larger than ``MAX_CONTENT_LENGTH`` is a 413 either way, as
    Flask's is when it reads it.

    A body nested deeper than the parser's recursion limit (``[[[[...``) is a
    400 too (``None`` when silent): it is bad input, however Flask answers it.
    """
    if not (force or is_json(request.headers.get("content-type"))):
        if silent:
            return None
        raise HTTPException(415, detail=_NOT_JSON)
    _check_content_length(request, _limits(request)[0])
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # chained as Flask chains it, for the log
        if silent:
            return None
        raise HTTPException(400, detail=BadRequest().description) from exc


# Flask's defaults for MAX_CONTENT_LENGTH, MAX_FORM_MEMORY_SIZE and MAX_FORM_PARTS.
_DEFAULT_LIMITS: tuple[int | None, int | None, int | None] = (None, 500_000, 1000)

# Where the parsed form waits in the request's scope: parsed once per request.
_FORM_KEY = "flask2fastapi.form"


def _limits(request: Request) -> tuple[int | None, int | None, int | None]:
    """The Flask app's body and form limits, or Flask's defaults without one."""
    flask_app = flask_app_of(request)
    if flask_app is None:
        return _DEFAULT_LIMITS
    config = flask_app.config
    return (
        config.get("MAX_CONTENT_LENGTH", _DEFAULT_LIMITS[0]),
        config.get("MAX_FORM_MEMORY_SIZE", _DEFAULT_LIMITS[1]),
        config.get("MAX_FORM_PARTS", _DEFAULT_LIMITS[2]),
    )


def _check_content_length(request: Request, limit: int | None) -> None:
    """Werkzeug's ``get_input_stream`` check: a declared length over the limit is a 413."""
    length = get_content_length(
        request.headers.get("content-length"), request.headers.get("transfer-encoding")
    )
    if limit is not None and length is not None and length > limit:
        raise HTTPException(413, detail=RequestEntityTooLarge.description)


class _FormRequest(WerkzeugRequest):
    """Werkzeug's request, keeping uploads in memory: the hybrid holds the body in
    memory already, and nothing is left on disk to clean up after the port."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        return io.BytesIO()


FormData = tuple[ImmutableMultiDict[str, str], ImmutableMultiDict[str, FileStorage]]


async def _form_data(request: Request) -> FormData:
    """``(request.form, request.files)``, parsed by Werkzeug under the Flask app's limits."""
    parsed: FormData | None = request.scope.get(_FORM_KEY)
    if parsed is None:
        parser = _FormRequest(environ_of(request.scope, await request.body()))
        max_length, max_memory, max_parts = _limits(request)
        parser.max_content_length = max_length
        parser.max_form_memory_size = max_memory
        parser.max_form_parts = max_parts  # type: ignore[assignment]  # None: no limit, as in Flask
        try:
            parsed = (parser.form, parser.files)
        except RequestEntityTooLarge as exc:
            raise HTTPException(413, detail=exc.description) from exc
        request.scope[_FORM_KEY] = parsed
    assert parsed is not None
    return parsed


async def form(request: Request) -> ImmutableMultiDict[str, str]:
    """``request.form``: the fields of an urlencoded or multipart body, else empty.

    A Werkzeug ``MultiDict``, so ``.get(name, type=int)`` and ``.getlist``
    behave as in Flask; a body Werkzeug cannot parse gives an empty form, as
    in Flask. 413 when the body, a field or the number of parts exceeds the
    Flask app's limits.
    """
    return (await _form_data(request))[0]


async def files(request: Request) -> ImmutableMultiDict[str, FileStorage]:
    """``request.files``: the uploads of a multipart body, as Werkzeug ``FileStorage``.

    Each file is held in memory (Flask spools one past 500 KB to a temporary
    file; ``.read()``, ``.save()`` and ``.stream`` work alike).
    """
    return (await _form_data(request))[1]


@overload
def arg(request: Request, name: str) -> str | None: ...
@overload
def arg(request: Request, name: str, default: T) -> str | T: ...
@overload
def arg(request: Request, name: str, default: T, type: Callable[[str], Any]) -> Any: ...
@overload
def arg(request: Request, name: str, *, type: Callable[[str], T]) -> T | None: ...


def arg(
    request: Request,
    name: str,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
) -> Any:
    """``request.args.get(name, default, type=type)`` with Werkzeug's semantics."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    value = values[0]  # Werkzeug gives the first of repeated arguments
    if type is None:
        return value
    try:
        return type(value)
    except (ValueError, TypeError):
        return default


def args(request: Request) -> dict[str, str]:
    """The query arguments, each name with its first value, as ``request.args.get`` sees them."""
    first: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        first.setdefault(name, value)
    return first


def arg_list(request: Request, name: str, type: Callable[[str], Any] | None = None) -> list[Any]:
    """``request.args.getlist(name, type=type)``: every value but those that do not convert."""
    values: list[Any] = []
    for value in request.query_params.getlist(name):
        if type is None:
            values.append(value)
            continue
        try:
            values.append(type(value))
        except (ValueError, TypeError):
            continue  # Werkzeug's MultiDict.getlist skips it
    return values


def remote_addr(request: Request) -> str | None:
    """``request.remote_addr``: the client's address as the server gives it, else ``None``.

    Behind a proxy it is the proxy's, unless the server rewrites it from the
    proxy headers it trusts (uvicorn's ``--forwarded-allow-ips``), as Flask's
    is unless the app wraps itself in ``ProxyFix``.
    """
    return request.client.host if request.client else None


# The characters Werkzeug leaves unquoted: in a path (``BaseConverter.to_url``
# and the rule's static parts), in a query string (``werkzeug.urls._urlencode``)
# and in Flask's ``_anchor``.
_PATH_SAFE = "!$&'()*+,/:;=@"
_QUERY_SAFE = "!$'()*,/:;?@"
_ANCHOR_SAFE = "%!#$&'()*+,/:;=?@"

# Flask's keyword-only argument that this helper does not reproduce. Refused,
# so that it does not end up in the query string as an ordinary value would.
_UNSUPPORTED = ("_method",)

# A map of one rule, bound to each request as Flask binds its own, to ask
# Werkzeug for the scheme and host of an external URL.
_HOST_MAP = Map([Rule("/", endpoint="root")])

# Probe values are 15-digit numbers: a float holds them exactly, so every
# Starlette convertor (str, path, int, float, uuid) writes them back unchanged.
_PROBE_BASE = 271_828_182_845_904

# Starlette's path parameter names (``starlette.routing.PARAM_REGEX``).
_PARAM_NAME = re.compile("[a-zA-Z_][a-zA-Z0-9_]*")

# The path-parameter search below tries every subset of the values whose names
# could be path parameters: 2**8 = 256 calls of url_path_for at most.
_MAX_CANDIDATES = 8

# Its answers: app -> (route name, candidate names) -> path parameter names.
# Weak, so that apps built by tests go away; cleared when it grows past a bound.
_PATH_KEYS: WeakKeyDictionary[Any, dict[tuple[str, frozenset[str]], frozenset[str]]] = (
    WeakKeyDictionary()
)
_PATH_KEYS_PER_APP = 1024


class _Probe(str):
    """A stand-in path value that notes whether the route's convertor read it as a number."""

    kind = "str"

    def __int__(self) -> int:
        self.kind = "int"
        return int(str(self))

    def __float__(self) -> float:
        self.kind = "float"
        return float(str(self))


def _to_url(kind: str, value: Any) -> str:
    """The unquoted text Werkzeug's converter of that kind writes for ``value``."""
    if kind == "int":
        return str(int(value))  # IntegerConverter: no sign check, unlike Starlette's
    if kind == "float":
        return str(float(value))  # FloatConverter writes 3 as "3.0"
    return str(value)


def _build_path(app: Any, name: str, values: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """The route's path, unquoted, and which of ``values`` are its path parameters.

    ``url_path_for`` is the one public way to ask any Starlette or FastAPI app
    about a route, through included routers and mounts (FastAPI 0.165 hides
    included routes behind private objects), and it only answers when given
    exactly the route's parameters. So the subsets of the values that could be
    path parameters are tried, the largest first: Werkzeug too builds with the
    rule that uses the most arguments. The search costs up to 2**n calls, so
    n is bounded and each answer is remembered; a remembered answer that no
    longer works (its route removed) is searched for again.
    """
    candidates = frozenset(key for key in values if _PARAM_NAME.fullmatch(key))
    if len(candidates) > _MAX_CANDIDATES:
        raise URLForError(
            f"url_for() tells path parameters from query values among at most "
            f"{_MAX_CANDIDATES} values; {name!r} was given {len(candidates)}: "
            f"{', '.join(sorted(candidates))}"
        )
    try:
        known = _PATH_KEYS.setdefault(app, {})
    except TypeError:  # an app without weak references is searched every time
        known = {}
    cache_key = (name, candidates)
    remembered = [known[cache_key]] if cache_key in known else []
    for keys in itertools.chain(remembered, _subsets(candidates)):
        path = _render(app, name, values, keys)
        if path is not None:
            if len(known) >= _PATH_KEYS_PER_APP:
                known.clear()
            known[cache_key] = keys
            return path, keys
    raise NoMatchFound(name, dict(values))


def _subsets(names: frozenset[str]) -> Iterator[frozenset[str]]:
    """The subsets of ``names``, the largest first, in a stable order."""
    ordered = sorted(names)
    for size in range(len(ordered), -1, -1):
        for subset in itertools.combinations(ordered, size):
            yield frozenset(subset)


def _render(app: Any, name: str, values: Mapping[str, Any], keys: frozenset[str]) -> str | None:
    """The unquoted path of the route named ``name`` whose parameters are exactly ``keys``.

    The route renders probes rather than the values, because Starlette's
    convertors refuse what Werkzeug writes (a ``/`` in a string, a negative
    int) and write floats differently; each probe is then replaced by what
    Werkzeug's converter of the same kind writes for the value. ``None`` when
    no such route exists.
    """
    probes = {key: _Probe(_PROBE_BASE + i) for i, key in enumerate(sorted(keys))}
    try:
        template = str(app.url_path_for(name, **probes))
    except NoMatchFound:
        return None
    texts: dict[str, str] = {
        probe: _to_url(probe.kind, values[key]) for key, probe in probes.items()
    }
    return _replace_all(template, texts)


def _replace_all(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each key of ``replacements`` replaced in one pass, so no value is re-read."""
    if not replacements:
        return text
    pattern = "|".join(map(re.escape, replacements))
    return re.sub(pattern, lambda match: replacements[match.group()], text)


def url_for(
    request: Request,
    name: str,
    /,
    *,
    _anchor: str | None = None,
    _external: bool = False,
    _scheme: str | None = None,
    **values: Any,
) -> str:
    """Flask's ``url_for(name, **values)`` inside a request, for the route named ``name``.

    Path parameters are written by the route's convertor and quoted as
    Werkzeug quotes them; the other values make the query string, ``None``
    left out and lists repeated; ``_anchor`` becomes the fragment. The path
    starts with the app's root path, as Flask's starts with the script root.
    ``_external=True`` prefixes the request's scheme and ``Host`` as Werkzeug
    writes them (lower-cased, the default port left out), or ``_scheme``'s.

    Raises ``NoMatchFound`` where Flask raises ``BuildError``, ``ValueError``
    for ``_scheme`` without ``_external`` as Flask does, and
    :class:`~bridge.URLForError` (a ``TypeError``) for ``_method``, which is
    not supported, or for more than eight values named like path parameters.
    """
    if unsupported := [key for key in _UNSUPPORTED if key in values]:
        raise URLForError(f"url_for() does not support {', '.join(unsupported)}")
    if _scheme is not None and not _external:
        raise ValueError("When specifying '_scheme', '_external' must be True.")  # Flask's words
    present = {key: value for key, value in values.items() if value is not None}
    path, path_keys = _build_path(request.app, name, present)
    url = quote(path, safe=_PATH_SAFE)
    rest = {key: value for key, value in present.items() if key not in path_keys}
    query = [(key, value) for key, value in iter_multi_items(rest) if value is not None]
    if query:
        url += "?" + urlencode(query, safe=_QUERY_SAFE)
    if _anchor is not None:
        url += "#" + quote(_anchor, safe=_ANCHOR_SAFE)
    root_path = str(request.scope.get("root_path", ""))
    relative = f"{root_path.rstrip('/')}/{url.lstrip('/')}"
    if not _external:
        return relative
    return _origin(request, _scheme) + relative


def _origin(request: Request, scheme: str | None) -> str:
    """``scheme://host`` of an external URL, as Werkzeug builds it for this request.

    The scheme is the ASGI scope's, which the server rewrites from the proxy
    headers it trusts; a ``Host`` Werkzeug finds invalid gives an empty host,
    as in Flask. ``SERVER_NAME`` is not applied.
    """
    environ = environ_of(request.scope)
    environ["SCRIPT_NAME"] = ""
    adapter = _HOST_MAP.bind_to_environ(environ)
    return adapter.build("root", force_external=True, url_scheme=scheme).removesuffix("/")
