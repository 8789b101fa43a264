from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from bridge._exceptions import ImportStringError, ManifestError
from bridge._serving.loading import import_object, load_fastapi_app, load_flask_app

WriteModule = Callable[[str, str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Writes a module under a name unique to this test and returns that name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(stem: str, source: str) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


FLASK_INSTANCE = """
    from flask import Flask
    app = Flask("legacy")
"""

FLASK_FACTORY = """
    from flask import Flask
    def create_app():
        app = Flask("made")
        app.config["MADE_BY_FACTORY"] = True
        return app
"""

FASTAPI_INSTANCE = """
    from fastapi import FastAPI
    api = FastAPI(title="ported")
"""


def test_instance_by_import_string(write_module: WriteModule) -> None:
    module = write_module("legacy", FLASK_INSTANCE)

    app = load_flask_app(f"{module}:app")

    assert isinstance(app, Flask)
    assert app is sys.modules[module].app


def test_factory_is_called(write_module: WriteModule) -> None:
    module = write_module("factory", FLASK_FACTORY)

    app = load_flask_app(f"{module}:create_app")

    assert app.config["MADE_BY_FACTORY"] is True


def test_fastapi_instance(write_module: WriteModule) -> None:
    module = write_module("ported", FASTAPI_INSTANCE)

    assert load_fastapi_app(f"{module}:api").title == "ported"


def test_bare_module_finds_app(write_module: WriteModule) -> None:
    module = write_module("bare", FLASK_INSTANCE + FLASK_FACTORY)

    app = load_flask_app(module)

    assert app.name == "legacy"  # app wins over create_app


def test_bare_module_falls_back_to_create_app(write_module: WriteModule) -> None:
    module = write_module("bare_factory", FLASK_FACTORY)

    assert load_flask_app(module).name == "made"


def test_missing_module_is_an_import_string_error() -> None:
    with pytest.raises(ImportStringError, match="cannot import 'no_such_module_xyz'") as caught:
        import_object("no_such_module_xyz:app")

    assert caught.value.import_string == "no_such_module_xyz:app"
    assert "\n" not in str(caught.value)


def test_missing_submodule_is_an_import_string_error() -> None:
    with pytest.raises(
        ImportStringError, match=r"cannot import 'bridge\.no_such_module'"
    ) as caught:
        import_object("bridge.no_such_module:app")
    # The cause names the module that is missing, which may be a parent package.
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert caught.value.__cause__.name == "bridge.no_such_module"


def test_missing_attribute_is_an_import_string_error(write_module: WriteModule) -> None:
    module = write_module("attr", FLASK_INSTANCE)

    with pytest.raises(
        ImportStringError, match=f"module '{module}' has no attribute 'application'"
    ):
        import_object(f"{module}:application")


def test_bare_module_without_app_or_create_app(write_module: WriteModule) -> None:
    module = write_module("empty", "x = 1\n")

    with pytest.raises(ImportStringError, match="has no attribute 'app' or 'create_app'"):
        load_flask_app(module)


@pytest.mark.parametrize("import_string", [":app", "  :create_app"])
def test_import_string_without_module(import_string: str) -> None:
    with pytest.raises(ImportStringError, match="names no module"):
        import_object(import_string)


@pytest.mark.parametrize(
    ("source", "attribute", "found"),
    [
        pytest.param(FASTAPI_INSTANCE, "api", "FastAPI", id="fastapi-app"),
        pytest.param("value = 42\n", "value", "int", id="int"),
        pytest.param("def create_app():\n    return 'nope'\n", "create_app", "str", id="factory"),
        pytest.param("from flask import Flask\n", "Flask", "type", id="class"),
    ],
)
def test_wrong_type_is_an_import_string_error(
    write_module: WriteModule, source: str, attribute: str, found: str
) -> None:
    module = write_module("wrong", source)

    with pytest.raises(ImportStringError, match=f"gave {found}, not a Flask app"):
        load_flask_app(f"{module}:{attribute}")


def test_flask_app_where_fastapi_is_expected(write_module: WriteModule) -> None:
    module = write_module("swapped", FLASK_INSTANCE)

    with pytest.raises(ImportStringError, match="gave Flask, not a FastAPI app"):
        load_fastapi_app(f"{module}:app")


@pytest.mark.parametrize("import_string", [None, ""])
def test_missing_flask_import_string_is_a_manifest_error(import_string: str | None) -> None:
    with pytest.raises(ManifestError, match=r"m.toml: \[apps\] flask is missing"):
        load_flask_app(import_string, "m.toml")


@pytest.mark.parametrize("import_string", [None, ""])
def test_missing_fastapi_import_string_is_an_app_serving_nothing(
    import_string: str | None,
) -> None:
    app = load_fastapi_app(import_string, "m.toml")

    # No docs or OpenAPI routes either: they would be URLs the legacy app lacks.
    assert app.routes == []


def test_broken_dependency_of_the_module_is_not_disguised(write_module: WriteModule) -> None:
    module = write_module("shopapp", "import no_such_dependency_xyz\n")

    with pytest.raises(ModuleNotFoundError) as caught:
        import_object(f"{module}:app")

    assert not isinstance(caught.value, ImportStringError)
    assert caught.value.name == "no_such_dependency_xyz"


def test_broken_dependency_named_like_a_prefix_of_the_module_is_not_disguised(
    write_module: WriteModule,
) -> None:
    # Like "redis_app.py" doing "import redis" without redis installed.
    module = write_module("nosuchdep_shop", "import nosuchdep\n")

    with pytest.raises(ModuleNotFoundError) as caught:
        import_object(f"{module}:app")

    assert not isinstance(caught.value, ImportStringError)
    assert caught.value.name == "nosuchdep"


def test_module_failing_with_another_error_propagates(write_module: WriteModule) -> None:
    module = write_module("failing", "raise RuntimeError('config missing')\n")

    with pytest.raises(RuntimeError, match="config missing"):
        import_object(f"{module}:app")


def test_current_folder_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"cwd_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FLASK_INSTANCE), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert isinstance(load_flask_app(f"{name}:app"), Flask)
    finally:
        sys.modules.pop(name, None)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder, with the current folder elsewhere and neither on ``sys.path``."""
    project, cwd = tmp_path / "project", tmp_path / "cwd"
    project.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(cwd))])
    yield project
    for folder in (project, cwd):
        for module in folder.glob("*.py"):
            sys.modules.pop(module.stem, None)


def test_the_manifest_folder_is_importable(elsewhere: Path) -> None:
    name = f"beside_manifest_{uuid.uuid4().hex[:8]}"
    (elsewhere / f"{name}.py").write_text(textwrap.dedent(FLASK_INSTANCE), encoding="utf-8")

    app = load_flask_app(f"{name}:app", str(elsewhere / "migration.toml"))

    assert isinstance(app, Flask)


def test_the_manifest_folder_comes_before_the_current_folder(elsewhere: Path) -> None:
    name = f"twice_{uuid.uuid4().hex[:8]}"
    (elsewhere / f"{name}.py").write_text("from flask import Flask\napp = Flask('manifest')\n")
    (Path.cwd() / f"{name}.py").write_text("from flask import Flask\napp = Flask('cwd')\n")

    app = load_flask_app(f"{name}:app", str(elsewhere / "migration.toml"))

    assert app.name == "manifest"


def test_fastapi_factory(write_module: WriteModule) -> None:
    module = write_module(
        "ported_factory",
        """
        from fastapi import FastAPI
        def create_app():
            return FastAPI(title="made")
        """,
    )

    assert load_fastapi_app(f"{module}:create_app").title == "made"
