"""Differences found by a shadow run, kept as pytest tests: ``shadow --export-failures``.

``flask2fastapi shadow CASES --export-failures tests/test_shadow_regressions.py``
appends every case that differs to ``tests/test_shadow_regressions.jsonl`` (a
case already there is not added again) and, the first time, writes the test
module beside it. The module runs each case of the file with the ``shadow``
fixture of the pytest plugin, under the manifest of the run: a test fails while
the port answers differently from the legacy route, and passes once it does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from bridge._exceptions import ConfigurationError
from bridge._shadow.cases import Case, load_cases

TEST_MODULE = '''\
"""Shadow regressions: requests whose port answered differently from the legacy route.

Written by ``flask2fastapi shadow --export-failures``; the cases are in
``{cases}`` beside this file, and later runs add theirs. A test fails while
the port differs from the legacy route and passes once it answers the same.
Run it with the shadow run's DATABASE_URL and SECRET_KEY.
"""

from pathlib import Path

import pytest

from bridge import Case, Manifest, load_manifest
from bridge.pytest_plugin import Shadow, shadow_cases

CASES = Path(__file__).with_name({cases_literal})
MANIFEST = Path(__file__).parent / {manifest}


@pytest.fixture
def shadow_manifest() -> Manifest:
    return load_manifest(MANIFEST)


@pytest.mark.parametrize("case", shadow_cases(CASES))
def test_the_port_answers_as_legacy(shadow: Shadow, case: Case) -> None:
    shadow.check(case)
'''


def check_export_path(path: str) -> Path:
    """The test module to write, which pytest must collect: ``test_*.py``."""
    module = Path(path)
    if not (module.name.startswith("test_") and module.suffix == ".py"):
        raise ConfigurationError(
            f"--export-failures writes a pytest module: name it test_*.py, not {module.name!r}"
        )
    return module


def export_failures(cases: Iterable[Case], module: Path, manifest_path: str | Path) -> int:
    """Append the *cases* not yet kept to the module's cases file, and write the module
    if it is not there; return how many cases were added."""
    cases_file = module.with_suffix(".jsonl")
    kept = (
        {_key(case.to_mapping()) for case in load_cases(cases_file)}
        if cases_file.exists()
        else set()
    )
    lines = []
    for case in cases:
        key = _key(case.to_mapping())
        if key not in kept:
            kept.add(key)
            lines.append(json.dumps(case.to_mapping(), ensure_ascii=False) + "\n")
    if not lines:
        return 0
    module.parent.mkdir(parents=True, exist_ok=True)
    with cases_file.open("a", encoding="utf-8") as out:
        out.writelines(lines)
    if not module.exists():
        manifest = os.path.relpath(Path(manifest_path).resolve(), module.parent.resolve())
        module.write_text(
            TEST_MODULE.format(
                cases=cases_file.name,
                cases_literal=json.dumps(cases_file.name),
                manifest=json.dumps(Path(manifest).as_posix()),
            )
        )
    return len(lines)


def _key(data: dict[str, object]) -> str:
    """What makes two cases the same request: everything but the name."""
    return json.dumps({k: v for k, v in data.items() if k != "name"}, sort_keys=True)
