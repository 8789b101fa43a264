"""The scaffold of a port: compiles, imports public names only, routes like its rule."""

from __future__ import annotations

import ast
import importlib
import json
import sys
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import flask_login
import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask, g, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter

import bridge
from bridge import ConfigurationError, DbConnection, DbSession, FlaskLogin, load_cases
from bridge._porting.scaffold import CASE_USER, fastapi_path, port_dependencies, scaffold_port
from bridge._serving.manifest import Manifest, RouteKey, RouteState
from bridge._serving.routing import RouteTable, async_serves, sample_path


class TwoLetters(BaseConverter):
    regex = "[a-z]{2}"


def every_converter_app() -> Flask:
    """A Flask app with a rule for each converter Werkzeug has, and a custom one."""
    app = Flask(__name__)
    app.url_map.converters["two"] = TwoLetters

    @app.get("/by-int/<int:item_id>")
    def by_int(item_id: int) -> str:
        return str(item_id)

    @app.route("/mixed/<float:ratio>/<uuid:key>/<string:name>/<plain>", methods=["GET", "PUT"])
    def mixed(ratio: float, key: uuid.UUID, name: str, plain: str) -> str:
        request.get_json(silent=True)  # a body its cases send
        return f"{ratio} {key} {name} {plain}"

    @app.get("/files/<path:rest>")
    def files(rest: str) -> str:
        return rest

    @app.get("/kinds/<any(books, films):kind>")
    def kinds(kind: str) -> str:
        return kind

    @app.get("/codes/<two:code>")
    def codes(code: str) -> str:
        return code

    @app.get("/sized/<string(length=3):code>")
    def sized(code: str) -> str:
        return code

    @app.get("/pages", defaults={"page": 1}, endpoint="pages")
    @app.get("/pages/<int:page>", endpoint="pages")
    def pages(page: int) -> str:
        return str(page)

    @app.get("/tags", endpoint="tags")
    @app.get("/tags/<tag>", endpoint="tags")
    def tags(tag: str | None = None) -> str:
        return str(tag)

    return app


def import_module(tmp_path: Path, name: str, source: str) -> ModuleType:
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def filled(route: str, body: str) -> str:
    """The generated route with its body written, as a user would."""
    start = route.index("    raise NotImplementedError(")
    return route[:start] + textwrap_body(body) + route[route.index("\n", start) + 1 :]


def textwrap_body(body: str) -> str:
    return "".join(f"    {line}\n" for line in body.splitlines())


def bridge_imports(source: str) -> list[str]:
    """Every name the source imports from ``bridge`` or a module under it."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge"):
            assert node.module == "bridge", f"imports the private module {node.module}"
            names += [alias.name for alias in node.names]
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("bridge.") for a in node.names)
    return names


# -- The demo app -------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_apps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Flask, FastAPI]:
    from async_app import create_app as create_fastapi_app
    from legacy_flask_app import create_app as create_flask_app

    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.sqlite3"
    flask_app = create_flask_app({"SQLALCHEMY_DATABASE_URI": url, "SEED_DEMO_DATA": False})
    return flask_app, create_fastapi_app(bridge.DatabaseSettings(url=url))


def demo_endpoints() -> list[str]:
    from legacy_flask_app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SEED_DEMO_DATA": False})
    return sorted(app.view_functions)


@pytest.mark.parametrize("endpoint", demo_endpoints())
def test_every_demo_endpoint_gives_a_route_that_compiles(
    demo_apps: tuple[Flask, FastAPI], endpoint: str, tmp_path: Path
) -> None:
    flask_app, fastapi_app = demo_apps
    scaffold = scaffold_port(flask_app, endpoint, fastapi_app)

    compile(scaffold.route, f"{endpoint}.py", "exec")
    assert set(bridge_imports(scaffold.route)) <= set(bridge.__all__)
    assert f'name="{endpoint}"' in scaffold.route
    for rule in flask_app.url_map.iter_rules(endpoint):
        assert json.dumps(fastapi_path(rule)) in scaffold.route
    cases_file = tmp_path / "cases.jsonl"
    cases_file.write_text(scaffold.cases, encoding="utf-8")
    rules = [rule.rule for rule in flask_app.url_map.iter_rules(endpoint)]
    assert {case.name for case in load_cases(cases_file)} >= {
        f"{method} {rule}"
        for rule in flask_app.url_map.iter_rules(endpoint)
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    assert rules


def test_the_demo_ports_dependencies_are_read_from_its_fastapi_app(
    demo_apps: tuple[Flask, FastAPI],
) -> None:
    dependencies = port_dependencies(demo_apps[1])

    assert dependencies.database == "DbSession"
    assert [(d.module, d.name) for d in dependencies.users] == [
        ("async_app.security", "CurrentUser")
    ]
    assert dependencies.session_cookie


def test_a_view_that_needs_a_user_gets_the_apps_user_dependency(
    demo_apps: tuple[Flask, FastAPI],
) -> None:
    flask_app, fastapi_app = demo_apps
    scaffold = scaffold_port(flask_app, "orders.cancel_order", fastapi_app)

    assert "from async_app.security import CurrentUser\n" in scaffold.route
    assert "user: CurrentUser" in scaffold.route
    assert "session: DbSession" in scaffold.route
    assert "    #     @login_required\n" in scaffold.route  # the view, decorators included
    cases = [json.loads(line) for line in scaffold.cases.splitlines()]
    assert {case.get("user") for case in cases} == {CASE_USER, None}
    assert [case["name"] for case in cases if "user" not in case] == ["logged out"]


def test_only_a_view_that_reads_its_body_gets_body_cases(
    demo_apps: tuple[Flask, FastAPI],
) -> None:
    flask_app, fastapi_app = demo_apps
    cancel = scaffold_port(flask_app, "orders.cancel_order", fastapi_app).cases
    review = scaffold_port(flask_app, "catalog.create_review", fastapi_app).cases

    assert '"json"' not in cancel and '"body"' not in cancel
    review_cases = [json.loads(line) for line in review.splitlines()]
    assert all("json" in case or "body" in case for case in review_cases)
    assert review_cases[-1]["name"] == "not json"


def test_the_guide_shows_what_the_command_writes(
    demo_apps: tuple[Flask, FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parents[3])  # the view's file, as the guide shows it
    flask_app, fastapi_app = demo_apps
    scaffold = scaffold_port(flask_app, "orders.cancel_order", fastapi_app)
    page = Path("migration_guide/11-scaffold-a-port.md").read_text(encoding="utf-8")

    assert f"```python\n{scaffold.route}```\n" in page
    assert f"```json\n{scaffold.cases}```\n" in page


def test_the_filled_demo_port_is_where_the_hybrid_sends_its_rule(
    demo_apps: tuple[Flask, FastAPI], tmp_path: Path
) -> None:
    flask_app, fastapi_app = demo_apps
    endpoint, key = "orders.cancel_order", RouteKey("POST", "/api/orders/<int:order_id>/cancel")
    manifest = Manifest(routes={key: RouteState.ASYNC})
    with pytest.raises(bridge.ManifestError, match="has no POST route"):
        RouteTable(flask_app.url_map, fastapi_app.routes, manifest)
    route = scaffold_port(flask_app, endpoint, fastapi_app).route
    body = "from bridge import FlaskJSONResponse\nreturn FlaskJSONResponse({'id': order_id})"
    module = import_module(tmp_path, "port_cancel_order", filled(route, body))
    ported = FastAPI()
    ported.include_router(module.router)

    table = RouteTable(flask_app.url_map, [*fastapi_app.routes, *ported.routes], manifest)
    scope = {"type": "http", "method": "POST", "path": "/api/orders/7/cancel", "headers": []}
    assert table.side_for(scope) is RouteState.ASYNC
    assert [r.ported for r in table.routes if r.key == key] == [True]
    assert ported.url_path_for(endpoint, order_id=7) == "/api/orders/7/cancel"


# -- Every converter ----------------------------------------------------------------


@pytest.fixture
def converter_app() -> Flask:
    return every_converter_app()


def ported(tmp_path: Path, flask_app: Flask, endpoint: str, body: str) -> ModuleType:
    route = scaffold_port(flask_app, endpoint).route
    return import_module(tmp_path, f"port_{endpoint}", filled(route, body))


ECHO = "return JSONResponse({'args': [repr(v) for v in (%s)]})"


@pytest.mark.parametrize(
    "endpoint", ["by_int", "mixed", "files", "kinds", "codes", "sized", "pages", "tags"]
)
def test_each_rule_is_matched_by_its_port(
    converter_app: Flask, endpoint: str, tmp_path: Path
) -> None:
    module = ported(tmp_path, converter_app, endpoint, "pass")
    app = FastAPI()
    app.include_router(module.router)

    rules = list(converter_app.url_map.iter_rules(endpoint))
    for rule in rules:
        path = sample_path(rule)
        assert path is not None
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert async_serves(app.routes, method, path), f"{method} {path}"
        assert not async_serves(app.routes, "DELETE", path)
    assert len(module.router.routes) == len(rules)
    assert {r.name for r in module.router.routes} == {endpoint}


def test_converters_become_typed_path_parameters(converter_app: Flask, tmp_path: Path) -> None:
    hints = {
        endpoint: typing.get_type_hints(
            ported(tmp_path, converter_app, endpoint, "pass").__dict__[endpoint],
            include_extras=True,
        )
        for endpoint in ("by_int", "mixed", "files", "kinds", "codes", "pages", "tags")
    }

    assert hints["by_int"]["item_id"] is int
    assert [hints["mixed"][n] for n in ("ratio", "key", "name", "plain")] == [
        float,
        uuid.UUID,
        str,
        str,
    ]
    assert hints["files"]["rest"] is str
    assert hints["kinds"]["kind"] == typing.Literal["books", "films"]
    assert hints["codes"]["code"] is str
    assert hints["by_int"]["session"] == DbSession
    assert hints["pages"]["page"] is int  # the rule without it gives its default
    assert hints["tags"]["tag"] == str | None


def test_paths_use_fastapi_syntax(converter_app: Flask) -> None:
    paths = {
        rule.endpoint + rule.rule: fastapi_path(rule) for rule in converter_app.url_map.iter_rules()
    }

    assert paths["by_int/by-int/<int:item_id>"] == "/by-int/{item_id:int}"
    assert paths["files/files/<path:rest>"] == "/files/{rest:path}"
    assert paths["kinds/kinds/<any(books, films):kind>"] == "/kinds/{kind}"
    assert (
        paths["mixed/mixed/<float:ratio>/<uuid:key>/<string:name>/<plain>"]
        == "/mixed/{ratio:float}/{key:uuid}/{name}/{plain}"
    )


@pytest.mark.anyio
async def test_the_port_gets_the_values_the_flask_converters_give(
    converter_app: Flask, tmp_path: Path
) -> None:
    body = "from starlette.responses import JSONResponse\n" + ECHO % "ratio, key, name, plain"
    module = ported(tmp_path, converter_app, "mixed", body)
    app = FastAPI()
    app.include_router(module.router)
    app.dependency_overrides[typing.get_args(DbSession)[1].dependency] = lambda: None
    key = "12345678-1234-5678-1234-567812345678"
    path = f"/mixed/2.5/{key}/caf%C3%A9/x"

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.put(path)
    flask_answer = converter_app.test_client().put(path)

    assert answer.status_code == 200, answer.text
    assert answer.json()["args"] == ["2.5", f"UUID('{key}')", "'café'", "'x'"]
    assert flask_answer.text == f"2.5 {key} café x"


def notes(route: str) -> str:
    """The route's comments above the legacy view, joined into one line."""
    lines = route.split("# The legacy view")[0].splitlines()
    return " ".join(line.strip()[2:] for line in lines if line.strip().startswith("# "))


def test_the_notes_name_what_fastapi_does_not_check(converter_app: Flask) -> None:
    assert "kind: a value outside any() matches no Flask rule" in notes(
        scaffold_port(converter_app, "kinds").route
    )
    assert "where Flask answers 404" in notes(scaffold_port(converter_app, "kinds").route)
    assert "custom converter TwoLetters" in notes(scaffold_port(converter_app, "codes").route)
    assert "takes (length=3)" in notes(scaffold_port(converter_app, "sized").route)
    assert notes(scaffold_port(converter_app, "by_int").route) == ""


def test_cases_cover_each_variable_and_the_values_its_converter_refuses(
    converter_app: Flask,
) -> None:
    cases = [json.loads(line) for line in scaffold_port(converter_app, "mixed").cases.splitlines()]
    paths = {(case["method"], case["path"]) for case in cases}

    zero = "00000000-0000-0000-0000-000000000000"
    assert ("GET", f"/mixed/1.5/{zero}/x/x") in paths
    assert ("PUT", f"/mixed/x/{zero}/x/x") in paths  # float refuses x
    assert ("GET", "/mixed/1.5/not-a-uuid/x/x") in paths
    assert ("GET", f"/mixed/1.5/{zero}/caf%C3%A9/x") in paths
    put = [case for case in cases if case["method"] == "PUT"]
    assert all("json" in case or "body" in case for case in put)
    assert [case["name"] for case in put if "body" in case] == ["not json"]
    # What the converter refuses, Flask answers 404 for; what it takes, Flask routes.
    adapter = converter_app.url_map.bind("localhost")
    for case in cases:
        refused = " refuses " in case["name"]
        try:
            adapter.match(case["path"].replace("%C3%A9", "é"), method=case["method"])
            matched = True
        except (NotFound, MethodNotAllowed):
            matched = False
        assert matched is not refused, case


def test_kinds_cases_take_each_item(converter_app: Flask) -> None:
    cases = [json.loads(line) for line in scaffold_port(converter_app, "kinds").cases.splitlines()]

    assert [case["path"] for case in cases] == [
        "/kinds/books",
        "/kinds/films",
        "/kinds/not-books-films",
    ]


# -- Dependencies -------------------------------------------------------------------


def current_user() -> str:
    return "someone"


def admin_user() -> str:
    return "admin"


CurrentUser = Annotated[str, Depends(current_user)]
AdminUser = Annotated[str, Depends(admin_user)]


def admin_required(view: Any) -> Any:
    return view


def connection_ports() -> FastAPI:
    app = FastAPI()

    @app.get("/a")
    async def a(connection: DbConnection, user: AdminUser) -> None: ...

    @app.get("/b")
    async def b(connection: DbConnection, user: CurrentUser) -> None: ...

    @app.get("/c")
    async def c(connection: DbConnection, user: CurrentUser) -> None: ...

    @app.get("/d")
    async def d(session: DbSession) -> None: ...

    return app


def user_app() -> Flask:
    app = Flask(__name__)

    @app.post("/admin/<int:item_id>")
    @admin_required
    def admin_view(item_id: int) -> str:
        return str(item_id)

    @app.get("/me")
    def me() -> str:
        return str(g.user)

    return app


def test_the_database_dependency_most_ports_use() -> None:
    dependencies = port_dependencies(connection_ports())

    assert dependencies.database == "DbConnection"
    assert [user.name for user in dependencies.users] == ["CurrentUser", "AdminUser"]
    assert not dependencies.session_cookie


def test_without_a_fastapi_app_the_port_takes_a_session() -> None:
    route = scaffold_port(user_app(), "me").route

    assert "session: DbSession" in route
    assert "user:" not in route  # no port shows how this app gets its user


def test_the_user_dependency_is_picked_by_the_views_decorator() -> None:
    admin = scaffold_port(user_app(), "admin_view", connection_ports()).route
    me = scaffold_port(user_app(), "me", connection_ports()).route

    assert f"from {__name__} import AdminUser\n" in admin
    assert "user: AdminUser" in admin and "connection: DbConnection" in admin
    assert "user: CurrentUser" in me
    assert "from bridge import DbConnection\n" in me


login = FlaskLogin()
LoggedIn = Annotated[Any, Depends(login.login_required)]
MaybeUser = Annotated[Any, Depends(login.current_user)]


def flask_login_ports() -> FastAPI:
    """Ports that take the user through the toolkit's Flask-Login adapter."""
    app = FastAPI()
    login.install(app)

    @app.get("/notes")
    async def notes(user: LoggedIn, session: DbSession) -> None: ...

    @app.get("/profile")
    async def profile(user: MaybeUser, session: DbSession) -> None: ...

    return app


def test_a_toolkit_adapters_dependency_is_imported_from_the_ports_module() -> None:
    app = Flask(__name__)

    @app.get("/notes")
    @flask_login.login_required  # type: ignore[untyped-decorator]
    def notes() -> str:
        return str(flask_login.current_user.name)

    route = scaffold_port(app, "notes", flask_login_ports()).route

    assert f"from {__name__} import LoggedIn\n" in route
    assert "user: LoggedIn" in route  # the dependency that runs @login_required
    assert "bridge._" not in route
    compile(route, "notes.py", "exec")


def test_a_view_using_the_session_without_the_middleware_says_to_add_it() -> None:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> str:
        from flask import session

        return str(session["user_id"])

    route = scaffold_port(app, "who", connection_ports()).route

    assert "request: Request" in route
    assert "add FlaskSessionMiddleware" in route


# -- Errors -------------------------------------------------------------------------


def test_an_unknown_endpoint_names_the_closest(converter_app: Flask) -> None:
    with pytest.raises(ConfigurationError) as raised:
        scaffold_port(converter_app, "by_ints")

    message = str(raised.value)
    assert "no endpoint 'by_ints'" in message
    assert "closest: by_int" in message
    assert "\n" not in message


def test_an_endpoint_with_two_rules_gets_a_decorator_for_each(converter_app: Flask) -> None:
    route = scaffold_port(converter_app, "pages").route

    assert "    #     def pages(page: int) -> str:\n" in route
    assert "async def pages(session: DbSession, page: int = 1) -> Response:" in route
    assert "page: where a rule lacks it, Flask gives it 1 but FastAPI reads it" in notes(route)
    assert "methods=" not in route
    assert route.count("@router.get(") == 2


@pytest.fixture(autouse=True)
def _no_stray_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("port_"):
            del sys.modules[name]


def test_each_query_argument_the_view_reads_gets_its_cases() -> None:
    app = Flask(__name__)

    @app.get("/search/<int:shelf>")
    def search(shelf: int) -> str:
        page = request.args.get("page", 1, type=int)
        ratio = request.args.get("ratio", type=float)
        words = request.args.get("q")
        order = request.args["sort"]
        return f"{shelf} {page} {ratio} {words} {order}"

    cases = [json.loads(line) for line in scaffold_port(app, "search").cases.splitlines()]
    queries = [case["path"] for case in cases if "?" in case["path"]]

    assert queries == [
        "/search/1?page=1",
        "/search/1?page=x",
        "/search/1?ratio=1.5",
        "/search/1?ratio=x",
        "/search/1?q=x",
        "/search/1?sort=x",
    ]
    client = app.test_client()
    answers = {path: client.get(path).status_code for path in queries}
    assert (
        answers["/search/1?sort=x"] == 200
    )  # the one case where every argument the view needs is given
    assert answers["/search/1?page=1"] == 400  # sort missing: the cases show it


def test_a_class_based_view_shows_its_class() -> None:
    from flask.views import MethodView

    class Shelf(MethodView):
        def get(self, shelf_id: int) -> str:
            return str(shelf_id)

        def delete(self, shelf_id: int) -> str:
            return ""

    app = Flask(__name__)
    app.add_url_rule("/shelves/<int:shelf_id>", view_func=Shelf.as_view("shelf"))

    route = scaffold_port(app, "shelf").route

    assert "    #     class Shelf(MethodView):\n" in route
    assert '@router.api_route("/shelves/{shelf_id:int}", methods=["DELETE", "GET"]' in route
