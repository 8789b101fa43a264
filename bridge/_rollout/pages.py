"""The dashboard's HTML: Jinja templates, escaped by default, and the charts' geometry.

Server-rendered pages with their CSS inline and no script: sorting, filtering
and the forms are plain links and posts, and the charts are SVG drawn here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Migration{% endblock %} · flask2fastapi</title>
<style>
  :root { --legacy: #b45309; --async: #1d4ed8; --bad: #b91c1c; --ok: #15803d; --line: #d4d4d8; }
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #18181b; background: #fafafa; }
  header { background: #18181b; color: #fafafa; padding: .6rem 1.2rem; display: flex;
           justify-content: space-between; align-items: center; }
  header a { color: #fafafa; }
  header button { color: #fafafa; background: transparent; border: 1px solid #71717a;
                  border-radius: 4px; padding: .15rem .6rem; cursor: pointer; }
  header form { margin: 0; }
  main { padding: 1rem 1.2rem; }
  h1 { font-size: 1.1rem; margin: 0; }
  h2 { font-size: 1rem; margin: 1.4rem 0 .5rem; }
  .tiles { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
  .tile { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; }
  .tile b { display: block; font-size: 1.5rem; }
  table { border-collapse: collapse; background: #fff; width: 100%; }
  th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left;
           vertical-align: top; }
  th a { color: inherit; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .state { border-radius: 4px; padding: 0 .35rem; font-size: .85em; border: 1px solid; }
  .state-legacy { color: var(--legacy); } .state-async { color: var(--async); }
  .state-shadow, .state-canary { color: #6d28d9; }
  .bad { color: var(--bad); } .ok { color: var(--ok); } .muted { color: #71717a; }
  .filters a { margin-right: .6rem; } .filters a.on { font-weight: bold; }
  pre { background: #fff; border: 1px solid var(--line); padding: .5rem; overflow-x: auto;
        white-space: pre-wrap; max-height: 20rem; }
  .pair { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
  .message { padding: .5rem .8rem; border-radius: 6px; margin-bottom: 1rem; background: #fff;
             border: 1px solid var(--line); }
  .message.error { border-color: var(--bad); color: var(--bad); }
  form.inline { display: inline-block; margin: 0 .8rem .5rem 0; }
  svg { background: #fff; border: 1px solid var(--line); }
  .legend span { margin-right: 1rem; }
</style>
</head>
<body>
<header><h1><a href="{{ base }}">Migration</a>{% block heading %}{% endblock %}</h1>
{% if csrf %}<form method="post" action="{{ base }}logout">
<input type="hidden" name="csrf" value="{{ csrf }}"><button>Log out</button></form>{% endif %}
</header>
<main>
{% if message %}<p class="message" role="status">{{ message }}</p>{% endif %}
{% if error %}<p class="message error" role="alert">{{ error }}</p>{% endif %}
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_LOGIN = """{% extends "base" %}
{% block title %}Log in{% endblock %}
{% block main %}
<form method="post" action="{{ base }}login">
  <p><label>Admin token <input type="password" name="token" autocomplete="current-password"
     autofocus required></label></p>
  <p><button>Log in</button></p>
</form>
{% endblock %}
"""

_OVERVIEW = """{% extends "base" %}
{% block main %}
<div class="tiles">
  <div class="tile" id="ported"><b>{{ overview.ported }} / {{ overview.rows|length }}</b>routes ported</div>
  <div class="tile" id="async-share"><b>{{ percent(overview.async_share) }}</b>of the last hour's
    requests served by the async side</div>
  <div class="tile" id="demoted"><b class="{{ 'bad' if overview.demoted }}">{{ overview.demoted }}</b>
    routes demoted</div>
</div>
<p class="filters">State:
  <a href="{{ link(state=None) }}" class="{{ 'on' if not state }}">all</a>
  {% for each in states %}<a href="{{ link(state=each) }}" class="{{ 'on' if state == each }}">{{ each }}</a>{% endfor %}
</p>
<table id="routes">
<thead><tr>
  {% for column, label in columns %}<th><a href="{{ link(sort=column, order='desc' if sort == column and order == 'asc' else 'asc') }}">{{ label }}{% if sort == column %} {{ '▲' if order == 'asc' else '▼' }}{% endif %}</a></th>{% endfor %}
</tr></thead>
<tbody>
{% for row in rows %}
<tr data-route="{{ row.key }}">
  <td><a href="{{ base }}route?key={{ row.key|string|urlencode }}">{{ row.key.method }} {{ row.key.rule }}</a>
      <div class="muted">{{ row.endpoint }}</div></td>
  <td><span class="state state-{{ row.configured }}">{{ row.configured }}</span></td>
  <td class="effective"><span class="state state-{{ row.effective }}">{{ row.effective }}</span>
      {% if row.percent is not none %}{{ '%g' % row.percent }}%{% endif %}</td>
  <td class="n served-legacy">{{ row.hour.served_legacy }}</td>
  <td class="n served-async">{{ row.hour.served_async }}</td>
  <td class="n">{{ ms(row.latencies.quantile('legacy', 0.5)) }} / {{ ms(row.latencies.quantile('legacy', 0.95)) }}</td>
  <td class="n">{{ ms(row.latencies.quantile('async', 0.5)) }} / {{ ms(row.latencies.quantile('async', 0.95)) }}</td>
  <td class="n errors">{{ percent(row.hour.error_rate('legacy')) }} / {{ percent(row.hour.error_rate('async')) }}</td>
  <td class="n match">{{ percent(row.total.match_rate, 2) }}
      <div class="muted">{{ row.total.same }}/{{ row.total.compared }}{% if row.total.skipped %}, {{ row.total.skipped }} skipped{% endif %}</div></td>
  <td class="demotion">{% if row.last_demotion %}<span class="{{ 'bad' if row.demoted else 'muted' }}">{{ when(row.last_demotion.at) }}: {{ row.last_demotion.reason }}{% if not row.demoted %} (cleared){% endif %}</span>{% endif %}</td>
</tr>
{% else %}
<tr><td colspan="10" class="muted">No route in this state.</td></tr>
{% endfor %}
</tbody>
</table>
<p class="muted">Requests, latencies (p50 / p95, legacy then async) and error rates (5xx,
legacy / async): the last hour. Shadow match rate: since the route was first shadowed.
Read at {{ when(overview.at) }}.</p>
<h2>Traffic served by the async side, last hour</h2>
{{ chart(share, 'share', '%', 100)|safe }}
{% endblock %}
"""

_ROUTE = """{% extends "base" %}
{% block title %}{{ row.key }}{% endblock %}
{% block heading %} › {{ row.key.method }} {{ row.key.rule }}{% endblock %}
{% block main %}
<p>Configured <span class="state state-{{ row.configured }}">{{ row.configured }}</span>,
served <span class="state state-{{ row.effective }}" id="effective">{{ row.effective }}</span>
{% if row.percent is not none %}to {{ '%g' % row.percent }}% of users{% endif %}.
{% if row.override %}<span class="{{ 'bad' if row.demoted else '' }}">{{ 'Demoted' if row.demoted else 'Set' }}
by {{ row.override.actor }} at {{ when(row.override.at) }}{% if row.override.reason %}: {{ row.override.reason }}{% endif %}.</span>{% endif %}</p>

<h2>Change</h2>
<form class="inline" method="post" action="{{ base }}action">
  <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="key" value="{{ row.key }}">
  <input type="hidden" name="action" value="promote">
  <label>to <select name="state">{% for each in ['shadow', 'canary', 'async'] %}<option value="{{ each }}">{{ each }}</option>{% endfor %}</select></label>
  <label>percent <input name="percent" size="4" inputmode="decimal" value="{{ '%g' % row.percent if row.percent is not none else '' }}"></label>
  <label><input type="checkbox" name="force" value="1"> force, below the promotion bar</label>
  <button name="go" value="promote">Promote</button>
</form>
<form class="inline" method="post" action="{{ base }}action">
  <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="key" value="{{ row.key }}">
  <input type="hidden" name="action" value="demote"><button>Demote to legacy</button>
</form>
{% if row.override %}<form class="inline" method="post" action="{{ base }}action">
  <input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="key" value="{{ row.key }}">
  <input type="hidden" name="action" value="clear"><button>Clear {{ 'the demotion' if row.demoted else 'the override' }}</button>
</form>{% endif %}

<h2>Latency by side, last hour (p50 solid, p95 dashed)</h2>
<p class="legend"><span style="color: var(--legacy)">legacy</span><span style="color: var(--async)">async</span></p>
{{ chart(latency, 'latency', ' ms')|safe }}
<h2>Traffic served by the async side, last hour</h2>
{{ chart(share, 'share', '%', 100)|safe }}

<h2>Recent mismatches</h2>
{% for mismatch in mismatches %}
<section class="mismatch">
<h3>{{ when(mismatch.at) }} · {{ mismatch.request.method }} {{ mismatch.request.path }}{% if mismatch.request.query %}?{{ mismatch.request.query }}{% endif %}</h3>
<pre class="diff">{{ mismatch.diff }}</pre>
<details><summary>Request and both responses</summary>
<pre>{{ show(mismatch.request) }}</pre>
<div class="pair"><div><h4>legacy</h4><pre>{{ show(mismatch.legacy) }}</pre></div>
<div><h4>async</h4><pre>{{ show(mismatch.port) }}</pre></div></div>
</details>
</section>
{% else %}
<p class="muted">None recorded.</p>
{% endfor %}
{% endblock %}
"""

environment = Environment(
    loader=DictLoader({"base": _BASE, "login": _LOGIN, "overview": _OVERVIEW, "route": _ROUTE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if math.isinf(seconds):
        return "> 10 s"
    return f"≤ {seconds * 1000:g} ms"


def percent(share: float | None, digits: int = 1) -> str:
    return "–" if share is None else f"{share * 100:.{digits}f}%"


def when(at: datetime | float) -> str:
    if not isinstance(at, datetime):
        at = datetime.fromtimestamp(at, UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_WIDTH, _HEIGHT, _PAD = 720, 160, 4


def chart(
    lines: Sequence[tuple[str, str, Sequence[float | None]]],
    name: str,
    unit: str = "",
    top: float | None = None,
) -> str:
    """An SVG line chart of *lines*: ``(css colour, dash pattern, values)``, in *unit*.

    The values share one vertical scale from 0 to *top* (else their largest
    finite value); a missing value breaks its line.
    """
    if top is None:
        finite = (v for _, _, values in lines for v in values if v is not None)
        top = max((v for v in finite if math.isfinite(v)), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" data-chart="{name}" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{name} chart">'
    ]
    for colour, dash, values in lines:
        step = (_WIDTH - 2 * _PAD) / max(len(values) - 1, 1)
        for run in _runs(values):
            points = [
                (_PAD + i * step, _HEIGHT - _PAD - min(v, top) / top * (_HEIGHT - 2 * _PAD))
                for i, v in run
            ]
            text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                f'stroke-dasharray="{dash}" points="{text}"/>'
            )
            # A point of its own too: a minute alone between gaps has no line.
            parts.extend(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>' for x, y in points
            )
    parts.append(
        f'<text x="{_PAD + 2}" y="14" font-size="11" fill="#71717a">max {top:g}{unit}</text>'
        f'<text x="{_PAD + 2}" y="{_HEIGHT - 6}" font-size="11" fill="#71717a">an hour ago</text>'
        f'<text x="{_WIDTH - _PAD - 2}" y="{_HEIGHT - 6}" font-size="11" fill="#71717a" '
        'text-anchor="end">now</text></svg>'
    )
    return "".join(parts)


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, value))
    return [run for run in runs if run]
