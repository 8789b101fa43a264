from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge._rollout.store import RolloutStore, metadata


@pytest.fixture
def store(database_url: str) -> Iterator[RolloutStore]:
    """The rollout store on the test's database, with no table until first use, as a
    new application's; dropped again afterwards (PostgreSQL is shared by the suite)."""
    store = RolloutStore.from_url(database_url, worker="w1")
    metadata.drop_all(store.engine)  # a server run by another test may have made them
    yield store
    metadata.drop_all(store.engine)
    store.dispose()
