"""``flask2fastapi status``, ``promote``, ``demote``, ``clear`` and ``mismatches``, run as a
user runs them, on the store of the suite's database."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import Result

from bridge._rollout.store import Counts, Mismatch, RolloutStore, metadata, mismatches_table
from bridge._serving.manifest import RouteKey
from bridge._shadow.cases import load_cases
from tests.bridge.test_cli import Project, assert_config_error, invoke, project, serving

__all__ = ["project"]  # the fixture, shared with the other CLI tests

ROLLOUT_MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"

    [routes]
    "GET /api/items" = {{ state = "shadow", sample = 0.5 }}

    [rollout]
    promote_min_compared = 10
    poll_interval = 1.5
    metrics_path = "/_bridge/metrics"   # its token is the server's business, not ours
"""
LIST = RouteKey("GET", "/api/items")


@pytest.fixture
def store(project: Project, database_url: str) -> Iterator[RolloutStore]:
    project.write_manifest(ROLLOUT_MANIFEST.format(legacy=project.legacy, ported=project.ported))
    store = RolloutStore.from_url(database_url)
    store.version()  # creates the tables, and the database when it is a SQLite file
    yield store
    metadata.drop_all(store.engine)
    store.dispose()


def run(database_url: str, *args: str) -> Result:
    return invoke(*args, env={"DATABASE_URL": database_url})


def status(database_url: str) -> dict[str, dict[str, object]]:
    result = run(database_url, "status", "--json")
    assert result.exit_code == 0, result.output
    return {f"{row['method']} {row['rule']}": row for row in json.loads(result.stdout)}


def test_status_lists_every_flask_route(store: RolloutStore, database_url: str) -> None:
    store.add_counts({LIST: Counts(served_legacy=5, compared=4, same=3, different=1)})

    rows = status(database_url)

    assert sorted(rows) == [
        "GET /api/items",
        "GET /api/items/<int:item_id>",
        "POST /api/uploads",
    ]
    assert rows["GET /api/items"] == {
        "method": "GET",
        "rule": "/api/items",
        "state": "shadow",
        "effective_state": "shadow",
        "served": {"legacy": 5, "async": 0},
        "shadow": {"compared": 4, "same": 3, "different": 1, "skipped": 0},
        "demoted": None,
    }
    table = run(database_url, "status")
    assert table.exit_code == 0
    assert "75%" in table.stdout


def test_promote_below_the_bar_exits_1_and_changes_nothing(
    store: RolloutStore, database_url: str
) -> None:
    store.add_counts({LIST: Counts(compared=10, same=9, different=1)})

    result = run(database_url, "promote", "GET /api/items", "--to", "canary", "--percent", "10")

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("flask2fastapi: GET /api/items: not promoted: match rate 90%")
    assert result.stdout == ""
    assert store.overrides() == {}


def test_promote_demote_and_clear_as_every_worker_sees_them(
    store: RolloutStore, database_url: str
) -> None:
    store.add_counts({LIST: Counts(compared=10, same=10)})

    promoted = run(
        database_url, "promote", "GET /api/items", "--to", "canary", "--percent", "10",
        "--actor", "ana",
    )  # fmt: skip
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.startswith("GET /api/items: shadow -> canary 10%, by ana.")
    assert "within 1.5 s" in promoted.stdout
    assert status(database_url)["GET /api/items"]["effective_state"] == "canary"

    demoted = run(database_url, "demote", "GET /api/items", "--reason", "pager")
    assert demoted.exit_code == 0, demoted.output
    row = status(database_url)["GET /api/items"]
    assert row["effective_state"] == "legacy"
    assert isinstance(row["demoted"], dict) and row["demoted"]["reason"] == "pager"

    cleared = run(database_url, "clear", "GET /api/items")
    assert cleared.exit_code == 0, cleared.output
    row = status(database_url)["GET /api/items"]
    assert (row["effective_state"], row["demoted"]) == ("shadow", None)
    assert [event.action for event in store.events(LIST)] == ["clear", "demote", "set"]


def test_force_promotes_below_the_bar(store: RolloutStore, database_url: str) -> None:
    result = run(database_url, "promote", "GET /api/items", "--to", "async", "--force")

    assert result.exit_code == 0, result.output
    assert status(database_url)["GET /api/items"]["effective_state"] == "async"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ("promote", "GET /api/item", "--to", "async"),
            ("route GET /api/item matches no rule", "closest: GET /api/items"),
        ),
        (("demote", "/api/items"), ("must be an HTTP method and a Flask rule",)),
        (
            ("promote", "POST /api/uploads", "--to", "shadow"),
            ("has no port in the FastAPI app",),
        ),
        (("promote", "GET /api/items", "--to", "canary"), ("--percent 10",)),
        (("mismatches", "--case", "99"), ("no mismatch #99",)),
        (("mismatches", "GET /api/items", "--case", "1"), ("not both",)),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    store: RolloutStore, database_url: str, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert_config_error(run(database_url, *args), *fragments)
    assert store.overrides() == {}


def test_a_sqlite_file_that_does_not_exist_is_not_created(
    store: RolloutStore, tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere" / "shop.sqlite3"

    result = run(f"sqlite:///{missing}", "status")

    assert_config_error(result, f"no SQLite database at {missing}", "--database-url")
    assert not missing.exists()


def test_a_store_that_cannot_be_reached_is_one_line(store: RolloutStore) -> None:
    result = run("postgresql://nobody@127.0.0.1:1/nothing", "status")

    assert_config_error(result, "cannot use the rollout store", "[rollout] database")


def recorded(store: RolloutStore) -> Mismatch:
    store.add_mismatch(
        Mismatch(
            route=LIST,
            at=datetime(2026, 12, 1, 17, 30, tzinfo=UTC),
            request={
                "method": "GET",
                "path": "/api/items",
                "query": "sort=name",
                "headers": [["accept", "application/json"], ["cookie", "[redacted]"]],
                "body": "",
            },
            legacy={"status": 200, "headers": [], "body": '{"items": [1, 2]}'},
            port={"status": 200, "headers": [], "body": '{"items": [2, 1]}'},
            diff="$.items[0]: 1 != 2",
        )
    )
    return store.mismatches(LIST)[0]


def test_mismatches_lists_the_recorded_ones(store: RolloutStore, database_url: str) -> None:
    mismatch = recorded(store)

    listed = run(database_url, "mismatches", "GET /api/items")
    every = run(database_url, "mismatches", "--json")

    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith(f"#{mismatch.id}  2026-12-01T17:30:00+00:00  GET /api/items")
    assert "request: GET /api/items?sort=name" in listed.stdout
    assert "$.items[0]: 1 != 2" in listed.stdout
    assert [m["id"] for m in json.loads(every.stdout)] == [mismatch.id]


def test_a_mismatch_appended_as_a_case_runs_in_a_shadow_cases_file(
    store: RolloutStore, database_url: str, tmp_path: Path
) -> None:
    mismatch = recorded(store)

    result = run(database_url, "mismatches", "--case", str(mismatch.id))

    assert result.exit_code == 0, result.output
    assert "[redacted]" not in result.stdout
    assert "redacted headers left out: cookie" in result.stderr
    cases_file = tmp_path / "cases.jsonl"
    cases_file.write_text(result.stdout, encoding="utf-8")
    [case] = load_cases(cases_file)
    assert (case.method, case.path) == ("GET", "/api/items?sort=name")
    assert dict(case.headers) == {"accept": "application/json"}
    assert case.cookie is None


# The live server: a real `flask2fastapi serve` with the rollout's serving side.

LIVE_LEGACY_SOURCE = """
    import os

    from flask import Flask, jsonify, request

    def create_app():
        app = Flask(__name__, static_folder=None)
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]

        @app.get("/api/items")
        def list_items():
            return {"side": "legacy", "pid": os.getpid()}

        @app.post("/api/accounts")
        def create_account():
            response = jsonify({"side": "legacy", "got": request.get_json()})
            response.set_cookie("sid", request.cookies.get("sid", ""))
            return response

        return app
"""

LIVE_PORTED_SOURCE = """
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.get("/api/items")
    def list_items():
        return {"side": "async"}

    @app.post("/api/accounts")
    async def create_account(request: Request):
        return {"side": "async", "got": await request.json()}
"""

LIVE_MANIFEST = """
    [apps]
    flask = "{legacy}:create_app"
    fastapi = "{ported}:app"

    [routes]
    "POST /api/accounts" = {{ state = "shadow", shadow_writes = true }}

    [rollout]
    poll_interval = 0.3
    metrics_path = "/_bridge/metrics"
"""
SECRETS = ("PW-hunter2-secret", "TOKEN-in-body-secret", "BEARER-secret", "COOKIE-secret")
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture
def live_project(project: Project) -> Project:
    (project.folder / f"{project.legacy}.py").write_text(
        textwrap.dedent(LIVE_LEGACY_SOURCE), encoding="utf-8"
    )
    (project.folder / f"{project.ported}.py").write_text(
        textwrap.dedent(LIVE_PORTED_SOURCE), encoding="utf-8"
    )
    project.write_manifest(LIVE_MANIFEST.format(legacy=project.legacy, ported=project.ported))
    return project


@pytest.fixture
def live_store(live_project: Project, database_url: str) -> Iterator[RolloutStore]:
    store = RolloutStore.from_url(database_url)
    yield store
    metadata.drop_all(store.engine)
    store.dispose()


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_secrets_of_a_shadowed_request_reach_no_stored_mismatch_nor_log(
    live_project: Project, live_store: RolloutStore, database_url: str
) -> None:
    password, body_token, bearer, cookie = SECRETS
    env = {"FLASK2FASTAPI_METRICS_TOKEN": METRICS_TOKEN}
    with serving(
        live_project, database_url, "--log-level", "debug", env=env, ready="/api/items"
    ) as (http, served):
        answer = http.post(
            "/api/accounts",
            json={"name": "ana", "password": password, "token": body_token},
            headers={"authorization": f"Bearer {bearer}", "cookie": f"sid={cookie}"},
        )
        wait_for(lambda: bool(live_store.mismatches()), "the mismatch to be stored")

    assert answer.json()["got"]["password"] == password  # the client's answer is untouched
    assert answer.headers["x-bridge-side"] == "legacy"
    [mismatch] = live_store.mismatches()
    assert mismatch.request["method"] == "POST"
    assert json.loads(mismatch.request["body"])["password"] == "[redacted]"
    assert ["authorization", "[redacted]"] in mismatch.request["headers"]
    with live_store.engine.connect() as connection:
        stored = [str(row) for row in connection.execute(sa.select(mismatches_table))]
    listed = run(database_url, "mismatches", "--json")
    shown = run(database_url, "mismatches", "POST /api/accounts")
    case = run(database_url, "mismatches", "--case", str(mismatch.id))
    assert listed.exit_code == shown.exit_code == case.exit_code == 0
    assert "[redacted]" in stored[0] and "ana" in stored[0]
    everything = "\n".join([*stored, listed.output, shown.output, case.output, served.stderr or ""])
    for secret in SECRETS:
        assert secret not in everything
    sent = json.loads(case.stdout)
    assert "cookie" not in {name.lower() for name in sent.get("headers", {})}
    assert "authorization" not in {name.lower() for name in sent.get("headers", {})}


def test_with_two_workers_metrics_add_up_over_scrapes(
    live_project: Project, live_store: RolloutStore, database_url: str
) -> None:
    before = set(Path(tempfile.gettempdir()).glob("flask2fastapi-metrics-*"))
    env = {"FLASK2FASTAPI_METRICS_TOKEN": METRICS_TOKEN}
    pids: set[int] = set()
    with serving(live_project, database_url, "--workers", "2", env=env) as (http, _):
        folders = set(Path(tempfile.gettempdir()).glob("flask2fastapi-metrics-*")) - before
        assert len(folders) == 1  # the workers' private folder
        scrape = functools.partial(legacy_items, http)
        wait_for(lambda: scrape() is not None, "the requests that found the server up")
        counted = scrape()
        assert counted is not None
        while len(pids) < 2 or counted < 40:
            assert counted < 2000, "one worker answered every request"
            for _ in range(10):
                # A new connection each time, so that both workers accept some.
                answer = http.get("/api/items", headers={"connection": "close"})
                pids.add(answer.json()["pid"])
            counted += 10
            wait_for(lambda: scrape() == counted, "the requests in a scrape")  # noqa: B023
        assert http.get("/_bridge/metrics").status_code == 401
    assert not folders.pop().exists()  # removed when the server stopped


def legacy_items(http: httpx.Client) -> float | None:
    """How many legacy answers to GET /api/items a scrape counts, all workers together."""
    from prometheus_client.parser import text_string_to_metric_families

    scraped = http.get("/_bridge/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "flask2fastapi_requests_total" and sample.labels == {
                "route": "GET /api/items",
                "side": "legacy",
                "status": "200",
            }:
                return sample.value
    return None


def test_serve_gives_the_workers_a_private_metrics_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bridge._cli import _metrics_folder
    from bridge._rollout.metrics import MULTIPROC_ENV
    from bridge._serving.manifest import parse_manifest

    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with_metrics = parse_manifest('[rollout]\nmetrics_path = "/_bridge/metrics"\n')
    with _metrics_folder(with_metrics):
        folder = Path(os.environ[MULTIPROC_ENV])
        assert folder.is_dir() and not any(folder.iterdir())
        assert folder.stat().st_mode & 0o077 == 0  # private to the server's user
        (folder / "counter_1.db").write_bytes(b"x")  # what a worker writes
    assert MULTIPROC_ENV not in os.environ
    assert not folder.exists()

    with _metrics_folder(parse_manifest("")):
        assert MULTIPROC_ENV not in os.environ  # no metrics, no folder

    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with _metrics_folder(with_metrics):
        assert os.environ[MULTIPROC_ENV] == str(tmp_path)  # the user's own is kept
    assert tmp_path.is_dir()
