from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge._rollout.store import RolloutStore, metadata


@pytest.fixture
def store(database_url: str) -> Iterator[RolloutStore]:
    """A rollout store on this test's database, its tables dropped after the test."""
    store = RolloutStore.from_url(database_url, worker="w1")
    yield store
    metadata.drop_all(store.engine)
    store.dispose()
