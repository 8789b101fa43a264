"""``flask2fastapi shadow``: run a cases file and print the per-route table."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import click
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bridge._porting.database import DatabaseSettings
from bridge._serving.loading import load_fastapi_app, load_flask_app
from bridge._serving.manifest import Manifest
from bridge._shadow.cases import Case
from bridge._shadow.recorder import ChangeRecorder
from bridge._shadow.regressions import export_failures
from bridge._shadow.runner import (
    CaseResult,
    Outcome,
    RouteSummary,
    app_tables,
    proposed_toml,
    summarize,
)
from bridge._shadow.session import shadow_session
from bridge._table import render_table


def run_shadow(
    cases: Sequence[Case],
    manifest: Manifest,
    *,
    legacy_url: str | None,
    async_url: str | None,
    record_rows: bool,
    aa: bool,
    json_path: str | None,
    export_path: Path | None = None,
) -> bool:
    """Run every case, print the report; return whether any case differs.

    With *export_path*, the cases that differ are kept as pytest tests there
    (see :mod:`bridge._shadow.regressions`)."""
    results = anyio.run(_run, cases, manifest, legacy_url, async_url, record_rows, aa)
    summaries = summarize(results)
    click.echo(summary_table(summaries))
    details = render_details(summaries)
    if details:
        click.echo("\n" + details)
    proposals = proposed_toml(summaries, manifest)
    if proposals:
        click.echo(
            "\nThe A/A run found noise. Entries that silence it, keeping each route's "
            "state and rules (replace the route's entry in the manifest):\n\n" + proposals
        )
    if json_path:
        Path(json_path).write_text(
            json.dumps(to_json(results, summaries, manifest), indent=2) + "\n"
        )
    if export_path is not None:
        _export(results, export_path, manifest)
    return any(result.outcome is Outcome.DIFFERENT for result in results)


def _export(results: Sequence[CaseResult], module: Path, manifest: Manifest) -> None:
    assert manifest.path is not None  # the CLI loads it from a file
    differing = [r.case for r in results if r.outcome is Outcome.DIFFERENT]
    added = export_failures(differing, module, manifest.path)
    if differing:
        click.echo(
            f"\nKept {added} new of the {len(differing)} differing cases in "
            f"{module.with_suffix('.jsonl')}: pytest {module} fails until the port answers "
            "as legacy does"
        )


async def _run(
    cases: Sequence[Case],
    manifest: Manifest,
    legacy_url: str | None,
    async_url: str | None,
    record_rows: bool,
    aa: bool,
) -> list[CaseResult]:
    settings = DatabaseSettings.from_env()
    settings.check_drivers()
    flask_app = load_flask_app(manifest.flask_app, manifest.path)
    fastapi_app = load_fastapi_app(manifest.fastapi_app, manifest.path)
    urls = (legacy_url, async_url) if legacy_url is not None and async_url is not None else None
    # NullPool: every snapshot and restore opens its own connection and holds
    # nothing between cases that could block the apps' own writes.
    engine = create_engine(settings.sync_url, poolclass=NullPool)
    recorder = ChangeRecorder(engine, tables=app_tables(flask_app)) if record_rows else None
    session = shadow_session(
        flask_app, fastapi_app, manifest, recorder=recorder, aa=aa, database=engine, urls=urls
    )
    try:
        async with session as runner:
            runner.prepare(cases)
            results = []
            progress = Progress(len(cases))
            for case in cases:
                results.append(await runner.run(case))
                progress.advance()
            return results
    finally:
        engine.dispose()


class Progress:
    """Progress on stderr: a live counter on a terminal, a line per tenth elsewhere."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.live = sys.stderr.isatty()
        self.step = max(1, total // 10)

    def advance(self) -> None:
        self.done += 1
        if self.live:
            end = "\n" if self.done == self.total else ""
            click.echo(f"\rshadow: {self.done}/{self.total} cases", err=True, nl=False)
            click.echo(end, err=True, nl=False)
        elif self.done % self.step == 0 or self.done == self.total:
            click.echo(f"shadow: {self.done}/{self.total} cases", err=True)


def summary_table(summaries: Sequence[RouteSummary]) -> str:
    headers = ["route", "cases", "same", "different", "noise"]
    rows = [
        [
            s.route if s.ported else f"{s.route} (not ported)",
            str(s.cases),
            *(str(s.counts[o]) for o in (Outcome.SAME, Outcome.DIFFERENT, Outcome.NOISE)),
        ]
        for s in summaries
    ]
    totals = [
        "total",
        str(sum(s.cases for s in summaries)),
        *(
            str(sum(s.counts[o] for s in summaries))
            for o in (Outcome.SAME, Outcome.DIFFERENT, Outcome.NOISE)
        ),
    ]
    return render_table([headers, *rows, totals], align="<>>>>")


def render_details(summaries: Sequence[RouteSummary]) -> str:
    """The first differing case of each route that differs."""
    return "\n\n".join(
        s.first_difference.report() for s in summaries if s.first_difference is not None
    )


def to_json(
    results: Sequence[CaseResult], summaries: Sequence[RouteSummary], manifest: Manifest
) -> dict[str, Any]:
    return {
        "different": sum(r.outcome is Outcome.DIFFERENT for r in results),
        "routes": [
            {
                "route": s.route,
                "ported": s.ported,
                "cases": s.cases,
                **{o.value: s.counts[o] for o in Outcome},
            }
            for s in summaries
        ],
        "cases": [
            {
                "case": r.case.label,
                "route": r.route,
                "outcome": r.outcome.value,
                "ported": r.ported,
                "differences": [str(d) for d in r.differences],
                "noise": [str(d) for d in r.noise],
                "errors": [{"side": side, "traceback": trace} for side, trace in r.errors],
            }
            for r in results
        ],
        "proposed_rules": proposed_toml(summaries, manifest),
    }
