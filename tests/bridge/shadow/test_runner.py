"""Shadow runs on a small app pair: same, different, noise, and rows written."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from bridge._exceptions import ConfigurationError, ManifestError
from bridge._porting.database import DatabaseSettings
from bridge._serving.manifest import LoginRule, Manifest, RouteKey, RouteState, parse_manifest
from bridge._shadow.cases import Case
from bridge._shadow.compare import Rules
from bridge._shadow.jsonpath import format_path
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.redact import REDACTED
from bridge._shadow.runner import (
    UNMATCHED,
    WRONG_METHOD,
    CaseResult,
    Outcome,
    ShadowRunner,
    ported_side,
    proposed_toml,
    route_of,
    summarize,
)
from bridge._shadow.session import shadow_session
from tests.bridge import shadow_apps

pytestmark = [pytest.mark.anyio, pytest.mark.async_side]

GET_NOTE = Case(method="GET", path="/notes/1")
MISSING_NOTE = Case(method="GET", path="/notes/999")
ADD_NOTE = Case(method="POST", path="/notes", json={"text": "hello"}, has_json=True)
LOGIN = LoginRule(session_key="user_id", query="SELECT id FROM shadow_people WHERE email = :user")


@pytest.fixture
def recorder(database_settings: DatabaseSettings, sync_engine: Engine) -> Iterator[ChangeRecorder]:
    shadow_apps.create_schema(database_settings)
    yield ChangeRecorder(sync_engine, tables=list(shadow_apps.metadata.tables))
    shadow_apps.metadata.drop_all(sync_engine)


RunnerFactory = Callable[..., Any]


@pytest.fixture
def make_runner(
    database_settings: DatabaseSettings, recorder: ChangeRecorder
) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(
        variant: str = "good",
        *,
        aa: bool = True,
        login: LoginRule | None = LOGIN,
        rules: Rules | None = None,
    ) -> AsyncIterator[ShadowRunner]:
        flask_app = shadow_apps.create_flask(database_settings)
        port = shadow_apps.create_port(database_settings, variant)
        route_rules = {RouteKey("POST", "/notes"): rules} if rules else {}
        manifest = Manifest(login=login, rules=route_rules)
        try:
            async with shadow_session(
                flask_app, port, manifest, recorder=recorder, aa=aa
            ) as runner:
                yield runner
        finally:
            flask_app.extensions["engine"].dispose()

    return make


async def run(
    make_runner: Callable[..., Any], case: Case, variant: str = "good", **options: Any
) -> CaseResult:
    async with make_runner(variant, **options) as runner:
        result: CaseResult = await runner.run(case)
        return result


async def test_a_faithful_port_is_the_same_for_reads_and_errors(
    make_runner: Callable[..., Any],
) -> None:
    async with make_runner() as runner:
        for case in (GET_NOTE, MISSING_NOTE):
            result = await runner.run(case)
            assert result.outcome is Outcome.SAME, result.report()


async def test_a_random_token_is_noise_found_by_the_aa_run(make_runner: Callable[..., Any]) -> None:
    result = await run(make_runner, ADD_NOTE)
    assert result.outcome is Outcome.NOISE
    assert [d.where for d in result.noise] == ["$.created_at", "$.token"]
    assert result.proposed.ignore == ()  # noise narrows the comparison, never removes it
    assert result.proposed.vary == (("$.created_at", "instant"), ("$.token", "token"))
    proposal = proposed_toml(summarize([result]), Manifest())
    assert proposal == (
        '"POST /notes" = { state = "legacy", '
        'vary = { "$.created_at" = "instant", "$.token" = "token" } }'
    )


async def test_without_the_aa_run_noise_is_a_difference(make_runner: Callable[..., Any]) -> None:
    result = await run(make_runner, ADD_NOTE, aa=False)
    assert result.outcome is Outcome.DIFFERENT
    assert [d.where for d in result.differences] == ["$.created_at", "$.token"]


@pytest.mark.parametrize(
    ("variant", "note"),
    [
        ("stale-timestamp", "varies as instant: outside the run, "),
        (
            "offset-timestamp",
            "varies as instant: written as 9999-99-99T99:99:99.999999+99:99, "
            "legacy writes 9999-99-99T99:99:99.999999",
        ),
        ("short-token", "varies as token: 6 characters, legacy has 8"),
    ],
)
async def test_noise_narrows_the_comparison_a_value_outside_its_variation_differs(
    make_runner: Callable[..., Any], variant: str, note: str
) -> None:
    result = await run(make_runner, ADD_NOTE, variant)
    assert result.outcome is Outcome.DIFFERENT, result.report()
    [difference] = result.differences
    assert difference.where == ("$.token" if variant == "short-token" else "$.created_at")
    assert difference.note.startswith(note), difference.note
    assert difference.where not in [d.where for d in result.noise]


async def test_an_app_wide_header_the_port_drops_differs(make_runner: Callable[..., Any]) -> None:
    result = await run(make_runner, GET_NOTE, "drops-header")
    assert result.outcome is Outcome.DIFFERENT
    assert [str(d) for d in result.differences] == [
        'header x-app-version: legacy "1.4.2", async absent (missing in async)'
    ]


async def test_shadow_rules_apply_to_every_route(
    database_settings: DatabaseSettings, recorder: ChangeRecorder
) -> None:
    manifest = parse_manifest('[shadow]\nignore_headers = ["X-App-Version"]\n')
    assert manifest.shadow_rules == Rules(ignore_headers=("x-app-version",))
    flask_app = shadow_apps.create_flask(database_settings)
    port = shadow_apps.create_port(database_settings, "drops-header")
    try:
        async with shadow_session(flask_app, port, manifest, recorder=recorder) as runner:
            result = await runner.run(GET_NOTE)
            unmatched = runner.rules_for(UNMATCHED)
    finally:
        flask_app.extensions["engine"].dispose()
    assert result.outcome is Outcome.SAME, result.report()
    assert unmatched == manifest.shadow_rules


def test_a_bad_shadow_rule_is_one_line() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest('[shadow]\nignore_header = ["etag"]\n')
    assert "unknown key 'ignore_header' in [shadow]: expected one of" in str(caught.value)


@pytest.mark.parametrize(
    ("variant", "outcome"), [("good", Outcome.SAME), ("stale-timestamp", Outcome.DIFFERENT)]
)
async def test_the_adopted_proposal_still_catches_a_wrong_timestamp(
    make_runner: Callable[..., Any], variant: str, outcome: Outcome
) -> None:
    adopted = Rules(vary=(("$.created_at", "instant"), ("$.token", "token")))
    result = await run(make_runner, ADD_NOTE, variant, aa=False, rules=adopted)
    assert result.outcome is outcome, result.report()


@pytest.mark.parametrize(
    ("variant", "case", "where"),
    [
        ("wrong-field", GET_NOTE, "$.text"),
        ("wrong-status", ADD_NOTE, "status"),
        ("skips-write", ADD_NOTE, "rows shadow_counters[1].value"),
    ],
)
async def test_a_broken_port_differs_and_the_diff_says_where(
    make_runner: Callable[..., Any], variant: str, case: Case, where: str
) -> None:
    result = await run(make_runner, case, variant)
    assert result.outcome is Outcome.DIFFERENT
    assert where in [d.where for d in result.differences], result.report()
    assert where in result.report()


async def test_a_port_that_writes_one_row_too_many_differs(make_runner: Callable[..., Any]) -> None:
    result = await run(make_runner, ADD_NOTE, "extra-row")
    assert result.outcome is Outcome.DIFFERENT
    rows = [d for d in result.differences if d.where.startswith("rows shadow_notes")]
    assert rows and "async only" in str(rows[0]), result.report()


async def test_the_database_is_left_exactly_as_it_was(
    make_runner: Callable[..., Any], recorder: ChangeRecorder
) -> None:
    before = recorder.snapshot()
    async with make_runner("extra-row") as runner:
        for case in (ADD_NOTE, ADD_NOTE, GET_NOTE):
            await runner.run(case)
    assert recorder.snapshot() == before


async def test_a_user_logs_in_through_the_login_rule(make_runner: Callable[..., Any]) -> None:
    async with make_runner() as runner:
        request = runner.request(Case(method="GET", path="/whoami", user="ann@example.com"))
        result = await runner.run(Case(method="GET", path="/whoami", user="ann@example.com"))
    assert result.outcome is Outcome.SAME
    assert runner.cookie.load(request.headers["cookie"].split("=", 1)[1]) == {"user_id": 7}


async def test_a_user_without_a_login_rule_is_a_configuration_error(
    make_runner: Callable[..., Any],
) -> None:
    async with make_runner(login=None) as runner:
        with pytest.raises(ConfigurationError, match=r"\[shadow\] login"):
            await runner.run(Case(method="GET", path="/whoami", user="ann@example.com"))


async def test_an_unknown_user_is_a_configuration_error(make_runner: Callable[..., Any]) -> None:
    async with make_runner() as runner:
        with pytest.raises(ConfigurationError, match=r"no user 'zed@example\.com'"):
            await runner.run(Case(method="GET", path="/whoami", user="zed@example.com"))


async def test_requests_the_port_never_sees_get_the_legacy_answer_on_both_sides(
    make_runner: Callable[..., Any],
) -> None:
    async with make_runner("wrong-field") as runner:
        unknown = await runner.run(Case(method="GET", path="/nowhere"))
        wrong_method = await runner.run(Case(method="DELETE", path="/notes/1"))
    assert unknown.outcome is Outcome.SAME
    assert unknown.route == "(no Flask rule matches)"
    assert wrong_method.outcome is Outcome.SAME


async def test_summaries_count_each_outcome_per_route(make_runner: Callable[..., Any]) -> None:
    async with make_runner("wrong-field") as runner:
        results = [await runner.run(case) for case in (GET_NOTE, MISSING_NOTE, ADD_NOTE)]
    [get, post] = summarize(results)
    assert (get.route, get.cases, get.counts[Outcome.DIFFERENT], get.counts[Outcome.SAME]) == (
        "GET /notes/<int:note_id>",
        2,
        1,
        1,
    )
    assert get.first_difference is results[0]
    assert (post.route, post.counts[Outcome.NOISE]) == ("POST /notes", 1)


def test_head_is_reported_under_its_get_route_and_a_wrong_method_apart() -> None:
    flask_app = shadow_apps.create_flask(DatabaseSettings(url="sqlite:///unused.sqlite3"))
    url_map = flask_app.url_map
    assert route_of(url_map, Case(method="HEAD", path="/notes/1")) == "GET /notes/<int:note_id>"
    assert route_of(url_map, Case(method="PUT", path="/notes/1")) == WRONG_METHOD
    assert route_of(url_map, Case(method="GET", path="/nowhere")) == UNMATCHED
    flask_app.extensions["engine"].dispose()


def test_proposed_entries_keep_the_state_and_rules_and_parse_back() -> None:
    manifest = parse_manifest(
        '[routes]\n"POST /notes" = { state = "async", ignore_headers = ["etag"] }\n'
    )
    result = CaseResult(
        case=ADD_NOTE,
        route="POST /notes",
        differences=(),
        noise=(),
        proposed=Rules(ignore=("$.token",), ignore_columns=("shadow_notes.text",)),
    )
    proposal = proposed_toml(summarize([result]), manifest)
    reparsed = parse_manifest("[routes]\n" + proposal)
    key = RouteKey("POST", "/notes")
    assert reparsed.state("POST", "/notes") is RouteState.ASYNC
    assert reparsed.rules[key] == Rules(
        ignore=("$.token",), ignore_headers=("etag",), ignore_columns=("shadow_notes.text",)
    )


def test_a_proposed_pattern_with_control_characters_is_valid_toml() -> None:
    # A JSON key may hold anything: a newline, a tab, a quote, a backslash, DEL.
    pattern = format_path(('a"b\\c\nd\te\x7f é',))
    assert "\x7f" in pattern  # which TOML strings may not hold as it is
    result = CaseResult(
        case=ADD_NOTE,
        route="POST /notes",
        differences=(),
        noise=(),
        proposed=Rules(ignore=(pattern,), vary=((pattern, "token"),)),
    )
    proposal = proposed_toml(summarize([result]), Manifest())
    assert "\n" not in proposal  # still one line, to replace the route's
    reparsed = parse_manifest("[routes]\n" + proposal)
    assert reparsed.rules[RouteKey("POST", "/notes")] == Rules(
        ignore=(pattern,), vary=((pattern, "token"),)
    )


async def test_a_missing_user_stops_the_run_before_any_case_runs(
    make_runner: Callable[..., Any],
) -> None:
    cases = [GET_NOTE, Case(method="GET", path="/whoami", user="zed@example.com")]
    async with make_runner() as runner:
        with pytest.raises(ConfigurationError, match="no user"):
            runner.prepare(cases)


async def test_users_are_looked_up_without_recording_rows(
    database_settings: DatabaseSettings, recorder: ChangeRecorder
) -> None:
    flask_app = shadow_apps.create_flask(database_settings)
    port = shadow_apps.create_port(database_settings, "skips-write")
    session = shadow_session(flask_app, port, Manifest(login=LOGIN), database=recorder.engine)
    async with session as runner:
        whoami = await runner.run(Case(method="GET", path="/whoami", user="ann@example.com"))
    flask_app.extensions["engine"].dispose()
    assert whoami.outcome is Outcome.SAME


async def test_cases_the_port_never_sees_are_marked_not_ported(
    database_settings: DatabaseSettings, recorder: ChangeRecorder
) -> None:
    flask_app = shadow_apps.create_flask(database_settings)
    port = shadow_apps.create_port(database_settings)
    async with shadow_session(flask_app, port, Manifest(), recorder=recorder) as runner:
        reached = await runner.run(GET_NOTE)
        missed = await runner.run(Case(method="GET", path="/notes/abc"))
    flask_app.extensions["engine"].dispose()
    assert (reached.ported, missed.ported) == (True, False)


def test_the_port_side_checks_the_manifest_keys(database_settings: DatabaseSettings) -> None:
    flask_app = shadow_apps.create_flask(database_settings)
    port = shadow_apps.create_port(database_settings)
    misspelled = parse_manifest('[routes]\n"GET /note/<int:note_id>" = { state = "async" }\n')
    with pytest.raises(ManifestError, match="closest: GET /notes/<int:note_id>"):
        ported_side(flask_app, port, misspelled)
    flask_app.extensions["engine"].dispose()


def test_automatic_options_is_reported_apart() -> None:
    flask_app = shadow_apps.create_flask(DatabaseSettings(url="sqlite:///unused.sqlite3"))
    route = route_of(flask_app.url_map, Case(method="OPTIONS", path="/notes/1"))
    assert route == "(Flask's automatic OPTIONS)"
    flask_app.extensions["engine"].dispose()


async def test_a_failing_login_query_is_a_configuration_error(
    make_runner: Callable[..., Any],
) -> None:
    broken = LoginRule(session_key="user_id", query="SELECT id FROM no_such_table WHERE x = :user")
    async with make_runner(login=broken) as runner:
        with pytest.raises(
            ConfigurationError, match=r"the \[shadow\] login query failed"
        ) as caught:
            runner.prepare([Case(method="GET", path="/whoami", user="ann@example.com")])
    # The message has the driver's first line; the cause has all of it, and the SQL.
    assert isinstance(caught.value.__cause__, DBAPIError)


async def test_the_port_exception_is_shown_with_its_case(make_runner: Callable[..., Any]) -> None:
    result = await run(make_runner, ADD_NOTE, "raises")
    assert result.outcome is Outcome.DIFFERENT
    [(side, trace)] = result.errors
    assert side == "async"
    assert trace.startswith("Traceback (most recent call last):")
    assert trace.rstrip().endswith("RuntimeError: the port forgot something")
    report = result.report()
    assert "  status: legacy 201, async 500" in report
    assert "  async raised:\n    Traceback (most recent call last):" in report
    assert "    RuntimeError: the port forgot something" in report


async def test_a_user_logs_in_with_a_bearer_token_the_manifest_names(
    make_runner: Callable[..., Any],
) -> None:
    login = LoginRule(query=LOGIN.query, token="tests.bridge.shadow_apps:mint_token")
    case = Case(method="GET", path="/token-whoami", user="ann@example.com")
    async with make_runner(login=login) as runner:
        request = runner.request(case)
        result = await runner.run(case)
    assert request.headers["authorization"] == f"Bearer {shadow_apps.mint_token(7)}"
    assert "cookie" not in request.headers  # no session_key: the token alone
    assert result.outcome is Outcome.SAME, result.report()


def test_a_token_login_is_read_from_the_manifest() -> None:
    manifest = parse_manifest(
        '[shadow]\nlogin = { token = "app.auth:mint", query = "SELECT 1 WHERE :user" }\n'
    )
    assert manifest.login == LoginRule(query="SELECT 1 WHERE :user", token="app.auth:mint")
    with pytest.raises(ManifestError) as caught:
        parse_manifest('[shadow]\nlogin = { query = "SELECT 1" }\n')
    assert 'or give token = "package.module:mint_token"' in str(caught.value)


@pytest.mark.parametrize(
    ("choice", "sent"),
    [(None, {"cookie", "authorization"}), ("session", {"cookie"}), ("token", {"authorization"})],
)
async def test_a_case_chooses_session_or_token_when_the_login_has_both(
    make_runner: Callable[..., Any], choice: str | None, sent: set[str]
) -> None:
    both = dataclasses.replace(LOGIN, token="tests.bridge.shadow_apps:mint_token")
    case = Case.from_mapping(
        {"method": "GET", "path": "/whoami", "user": "ann@example.com", "login": choice}
    )
    by_token = dataclasses.replace(case, path="/token-whoami")
    async with make_runner(login=both) as runner:
        assert {"cookie", "authorization"} & set(runner.request(case).headers) == sent
        # Each app sees the user through the credential it reads, if the case sends it.
        session_user = (await runner.legacy(runner.request(case))).body
        token_user = (await runner.legacy(runner.request(by_token))).body
        results = [await runner.run(case), await runner.run(by_token)]
    assert (b'"user_id":7' in session_user) == ("cookie" in sent)
    assert (b'"user_id":7' in token_user) == ("authorization" in sent)
    assert [result.outcome for result in results] == [Outcome.SAME, Outcome.SAME]


@pytest.mark.parametrize(
    ("login", "choice", "missing"),
    [
        (LoginRule(query=LOGIN.query, session_key="user_id"), "token", "no token: add token ="),
        (
            LoginRule(query=LOGIN.query, token="tests.bridge.shadow_apps:mint_token"),
            "session",
            'no session_key: add session_key = "user_id"',
        ),
    ],
)
async def test_a_login_the_manifest_does_not_configure_stops_the_run(
    make_runner: Callable[..., Any], login: LoginRule, choice: str, missing: str
) -> None:
    case = Case.from_mapping(
        {"method": "GET", "path": "/whoami", "user": "ann@example.com", "login": choice}
    )
    async with make_runner(login=login) as runner:
        with pytest.raises(ConfigurationError) as caught:
            runner.prepare([case])
    assert f'the case logs in with "{choice}" but [shadow] login has {missing}' in str(caught.value)
    assert "or drop the case's login" in str(caught.value)


async def test_a_recorded_case_is_replayed_without_its_redacted_headers(
    make_runner: Callable[..., Any],
) -> None:
    headers = {"authorization": REDACTED, "cookie": REDACTED, "x-app-version": "2"}
    case = Case.from_mapping({"method": "GET", "path": "/whoami", "headers": headers})
    async with make_runner() as runner:
        request = runner.request(case)
        result = await runner.run(case)
    assert "authorization" not in request.headers and "cookie" not in request.headers
    assert request.headers["x-app-version"] == "2"
    assert result.outcome is Outcome.SAME, result.report()
