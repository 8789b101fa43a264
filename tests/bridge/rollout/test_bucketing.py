from __future__ import annotations

import itertools

import pytest
from fastapi import FastAPI
from flask import Flask, session

from bridge._rollout.bucketing import BUCKETS, Bucketer, bucket, serves_port
from bridge._serving.hybrid import HybridApp
from bridge._serving.manifest import parse_manifest
from tests.bridge.apps import http_scope

KEYS = [f"client:10.0.{i // 256}.{i % 256}" for i in range(10_000)]


@pytest.mark.parametrize("percent", [1, 5, 10, 25, 50, 90])
def test_about_percent_of_distinct_keys_go_to_the_port(percent: float) -> None:
    share = sum(serves_port(key, percent) for key in KEYS) / len(KEYS) * 100

    assert abs(share - percent) < 1.5, f"{share:.2f} % of keys at {percent} %"


def test_no_key_at_zero_and_every_key_at_a_hundred() -> None:
    assert not any(serves_port(key, 0) for key in KEYS)
    assert all(serves_port(key, 100) for key in KEYS)


def test_the_same_key_always_lands_in_the_same_bucket() -> None:
    buckets = [bucket(key) for key in KEYS[:500]]

    assert [bucket(key) for key in KEYS[:500]] == buckets
    assert all(0 <= b < BUCKETS for b in buckets)
    assert len(set(buckets)) > 450  # spread, not a constant


def test_raising_the_percentage_never_moves_a_key_back_to_legacy() -> None:
    steps = [0.5, 1, 5, 10, 10.25, 25, 50, 75, 99.99, 100]
    for low, high in itertools.pairwise(steps):
        moved_back = [k for k in KEYS if serves_port(k, low) and not serves_port(k, high)]
        assert moved_back == [], f"{len(moved_back)} keys went back from {low} % to {high} %"
    assert sum(serves_port(k, 10.25) for k in KEYS) > sum(serves_port(k, 10) for k in KEYS)


def test_header_key_and_its_fallback_to_the_client_address() -> None:
    bucketer = Bucketer("header:X-User")

    with_header = http_scope(headers=[(b"x-user", b"alice")])
    assert bucketer.key_for(with_header) == "header:alice"
    assert bucketer.key_for(http_scope()) == "client:127.0.0.1"


def test_cookie_key() -> None:
    bucketer = Bucketer("cookie:visitor")
    scope = http_scope(headers=[(b"cookie", b"theme=dark; visitor=v-42")])

    assert bucketer.key_for(scope) == "cookie:v-42"
    assert bucketer.key_for(http_scope(headers=[(b"cookie", b"theme=dark")])) == (
        "client:127.0.0.1"
    )


def test_client_key_ignores_headers_and_cookies() -> None:
    scope = http_scope(headers=[(b"x-user", b"alice")])
    scope["client"] = ("192.0.2.7", 4242)

    assert Bucketer("client").key_for(scope) == "client:192.0.2.7"


def test_session_key_reads_the_flask_session_as_the_app_signs_it() -> None:
    app = Flask(__name__)
    app.secret_key = "a secret for the test only, long enough"

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user_id"] = user
        return "ok"

    with app.test_client() as client:
        client.get("/login/u-7")
        cookie = client.get_cookie("session")
    assert cookie is not None

    hybrid = HybridApp(app, FastAPI(), parse_manifest(""))
    bucketer = Bucketer("session:user_id", hybrid.read_session)
    signed = http_scope(headers=[(b"cookie", f"session={cookie.value}".encode())])
    forged = http_scope(headers=[(b"cookie", b"session=eyJ1c2VyX2lkIjoidS04In0.forged")])

    assert bucketer.key_for(signed) == "session:u-7"
    assert bucketer.key_for(forged) == "client:127.0.0.1"  # a forged session is no session
    assert bucketer.key_for(http_scope()) == "client:127.0.0.1"
