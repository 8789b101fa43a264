"""The dashboard in a real headless Chromium, on the demo served by ``flask2fastapi serve``.

Known traffic goes through the server; the page must show it as the store
holds it, open a route's mismatches, and change a route through its form, which
``flask2fastapi status`` then reports. Screenshots stay in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as expected
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from bridge._rollout.store import RolloutStore
from tests.bridge.apps import stop
from tests.bridge.test_cli import TEST_SECRET_KEY, free_port, wait_until_serving
from tests.browser import ARTIFACTS, chromium

ROOT = Path(__file__).parents[3]
TOKEN = "dashboard-test-token-" + "x" * 20
SHADOWED = "GET /api/products/<int:product_id>"
START_TIMEOUT = 60
PAGE_TIMEOUT = 20  # seconds a page has to load after a click


@dataclass
class Demo:
    url: str
    manifest: Path
    env: dict[str, str]

    def data(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.url}/_bridge/data.json", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def demo(tmp_path: Path, database_url: str, store: RolloutStore) -> Iterator[Demo]:
    manifest = (ROOT / "migration.toml").read_text(encoding="utf-8")
    manifest = manifest.replace(
        '"async_app:create_app"', '"tests.bridge.rollout.dashboard_demo:create_app"'
    ).replace(f'"{SHADOWED}" = "async"', f'"{SHADOWED}" = {{ state = "shadow", sample = 1 }}')
    assert "dashboard_demo" in manifest and '"shadow"' in manifest, "the demo's manifest changed"
    manifest += "\n[rollout]\npoll_interval = 0.3\npromote_min_compared = 3\n"
    path = tmp_path / "migration.toml"
    path.write_text(manifest, encoding="utf-8")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "FLASK2FASTAPI_ADMIN_TOKEN": TOKEN,
    }
    log = tmp_path / "server.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--port", str(port),
             "--manifest", str(path), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/api/health", process, time.monotonic() + START_TIMEOUT)
        yield Demo(url, path, env)
    finally:
        stop(process)
        assert "Traceback" not in log.read_text(), log.read_text()


def _send_known_traffic(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url) as client:
        for _ in range(5):
            assert client.get("/api/products/1").status_code == 200  # shadowed: legacy
        for _ in range(4):
            assert client.get("/api/categories").status_code == 200  # async
        for _ in range(3):  # and the one that told the server was up
            assert client.get("/api/health").status_code == 200  # legacy


def _wait_for_counts(demo: Demo) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        data = demo.data()
        rows = {f"{row['method']} {row['rule']}": row for row in data["rows"]}
        shadow = rows[SHADOWED]["shadow"]
        served = sum(
            row["last_hour"]["served"]["legacy"] + row["last_hour"]["served"]["async"]
            for row in data["rows"]
        )
        if served == 13 and shadow["compared"] == 5:
            return data
        assert time.monotonic() < deadline, f"the store did not get the traffic: {data}"
        time.sleep(0.3)


def test_the_dashboard_shows_the_traffic_and_promotes_a_route(demo: Demo) -> None:
    _send_known_traffic(demo)
    data = _wait_for_counts(demo)
    ported = sum(row["effective_state"] == "async" for row in data["rows"])

    with chromium() as browser:
        browser.get(f"{demo.url}/_bridge/")
        assert "Admin token" in browser.page_source  # the 401 login page
        browser.find_element(By.NAME, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        wait = WebDriverWait(browser, PAGE_TIMEOUT)  # a click starts a navigation only
        wait.until(expected.presence_of_element_located((By.ID, "ported")))

        tiles = {
            tile.get_attribute("id"): tile.find_element(By.TAG_NAME, "b").text
            for tile in browser.find_elements(By.CSS_SELECTOR, ".tile")
        }
        assert tiles == {
            "ported": f"{ported} / {len(data['rows'])}",
            "async-share": "30.8%",  # 4 of 13 requests
            "demoted": "0",
        }
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-route="{SHADOWED}"]')
        assert row.find_element(By.CSS_SELECTOR, ".served-legacy").text == "5"
        assert row.find_element(By.CSS_SELECTOR, ".served-async").text == "0"
        assert row.find_element(By.CSS_SELECTOR, ".match").text.split() == ["0.00%", "0/5"]
        categories = browser.find_element(By.CSS_SELECTOR, 'tr[data-route="GET /api/categories"]')
        assert categories.find_element(By.CSS_SELECTOR, ".served-async").text == "4"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        row.find_element(By.TAG_NAME, "a").click()
        wait.until(expected.presence_of_element_located((By.CSS_SELECTOR, "section.mismatch")))
        mismatches = browser.find_elements(By.CSS_SELECTOR, "section.mismatch")
        assert len(mismatches) == 5
        assert "$.name" in mismatches[0].find_element(By.CSS_SELECTOR, "pre.diff").text
        browser.save_screenshot(str(ARTIFACTS / "dashboard-route.png"))

        form = browser.find_element(By.CSS_SELECTOR, 'input[value="promote"]').find_element(
            By.XPATH, ".."
        )
        Select(form.find_element(By.NAME, "state")).select_by_value("canary")
        form.find_element(By.NAME, "percent").send_keys("10")
        form.find_element(By.NAME, "force").click()
        form.find_element(By.TAG_NAME, "button").click()
        said = (By.CSS_SELECTOR, ".message")
        wait.until(expected.text_to_be_present_in_element(said, "canary 10%, by dashboard"))
        assert browser.find_element(By.ID, "effective").text == "canary"

    status = subprocess.run(
        [sys.executable, "-m", "bridge", "status", "--json", "--manifest", str(demo.manifest)],
        cwd=ROOT, env=demo.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {f"{row['method']} {row['rule']}": row for row in json.loads(status.stdout)}
    assert rows[SHADOWED]["state"] == "shadow"
    assert rows[SHADOWED]["effective_state"] == "canary"
    assert rows[SHADOWED]["served"] == {"legacy": 5, "async": 0}


def test_without_the_token_nothing_of_the_dashboard_is_served(demo: Demo) -> None:
    for path in ("/_bridge/", "/_bridge/data.json", f"/_bridge/route?key={SHADOWED}"):
        response = httpx.get(demo.url + path)
        assert response.status_code == 401, path
        assert "api/products" not in response.text
    refused = httpx.post(f"{demo.url}/_bridge/action", data={"key": SHADOWED, "action": "demote"})
    assert refused.status_code == 401
