"""``flask2fastapi port``: writes the route and its cases, never over a file unasked."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bridge import load_cases
from bridge._cli import main
from tests.bridge.test_cli import assert_config_error

LEGACY_SOURCE = """
    from flask import Flask, session

    def create_app():
        app = Flask(__name__, static_folder=None)

        @app.get("/api/notes/<int:note_id>")
        def get_note(note_id):
            return {"id": note_id, "owner": session.get("user_id")}

        @app.get("/api/notes")
        def list_notes():
            return {"items": []}

        return app
"""

PORTED_SOURCE = """
    from fastapi import FastAPI

    from bridge import DbConnection

    app = FastAPI()

    @app.get("/api/notes")
    async def list_notes(connection: DbConnection):
        return {"items": []}
"""

MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    suffix = uuid.uuid4().hex[:8]
    legacy, ported = f"port_legacy_{suffix}", f"port_ported_{suffix}"
    (tmp_path / f"{legacy}.py").write_text(textwrap.dedent(LEGACY_SOURCE), encoding="utf-8")
    (tmp_path / f"{ported}.py").write_text(textwrap.dedent(PORTED_SOURCE), encoding="utf-8")
    manifest = textwrap.dedent(MANIFEST.format(legacy=legacy, ported=ported))
    (tmp_path / "migration.toml").write_text(manifest, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop(legacy, None)
    sys.modules.pop(ported, None)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["port", *args])


def test_prints_the_route_without_out(folder: Path) -> None:
    result = invoke("get_note")

    assert result.exit_code == 0, result.output
    assert '@router.get("/api/notes/{note_id:int}", name="get_note")\n' in result.stdout
    # The app's ports take a Core connection, and the view reads the session.
    assert "note_id: int, request: Request, connection: DbConnection" in result.stdout
    compile(result.stdout, "port.py", "exec")
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".py") == ["migration.toml"]


def test_writes_the_route_and_its_cases_next_to_it(folder: Path) -> None:
    result = invoke("get_note", "--out", "note_port.py")

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    route = (folder / "note_port.py").read_text(encoding="utf-8")
    assert 'name="get_note"' in route
    cases = load_cases(folder / "note_port.cases.jsonl")
    assert [case.path for case in cases] == [
        "/api/notes/1",
        "/api/notes/x",
        "/api/notes/1.5",
        "/api/notes/999999999",
    ]
    assert "wrote note_port.cases.jsonl" in result.stderr


def test_cases_go_where_asked(folder: Path) -> None:
    result = invoke("list_notes", "--cases", "notes.jsonl")

    assert result.exit_code == 0, result.output
    lines = (folder / "notes.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "GET /api/notes", "method": "GET", "path": "/api/notes"}
    ]


@pytest.mark.parametrize("existing", ["note_port.py", "note_port.cases.jsonl"])
def test_refuses_to_overwrite_unless_forced(folder: Path, existing: str) -> None:
    (folder / existing).write_text("mine\n", encoding="utf-8")

    refused = invoke("get_note", "--out", "note_port.py")

    assert_config_error(refused, f"{existing} exists", "--force")
    assert (folder / existing).read_text(encoding="utf-8") == "mine\n"
    assert not (folder / "note_port.py").exists() or existing == "note_port.py"

    forced = invoke("get_note", "--out", "note_port.py", "--force")

    assert forced.exit_code == 0, forced.output
    assert (folder / existing).read_text(encoding="utf-8") != "mine\n"


def test_an_unknown_endpoint_names_the_closest(folder: Path) -> None:
    result = invoke("get_notes", "--out", "note_port.py")

    assert_config_error(result, "no endpoint 'get_notes'", "closest: get_note")
    assert not (folder / "note_port.py").exists()


def test_a_folder_that_does_not_exist_is_one_line(folder: Path) -> None:
    result = invoke("get_note", "--out", "missing/note_port.py")

    assert_config_error(result, "cannot write missing/note_port.py", "folder that exists")
