"""The demo's ports, with ``GET /api/products/<id>`` (and the list) shouting product names:
a port that differs, for the dashboard to show its mismatches."""

from __future__ import annotations

from fastapi import FastAPI

import async_app
import async_app.catalog
from tests.demo.broken_ports import product_json_with_shouted_name


def create_app() -> FastAPI:
    async_app.catalog.product_json = product_json_with_shouted_name  # type: ignore[attr-defined]
    return async_app.create_app()
