from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import Cluster, RedisChild
from tests.pg import create_database_sync, drop_database_sync
from tests.procs import Proc


@pytest.fixture
def redis_child() -> Iterator[RedisChild]:
    child = RedisChild()
    child.start()
    yield child
    child.stop()


@pytest.fixture
def cluster_db() -> Iterator[str]:
    url = create_database_sync("ts_cluster")
    yield url
    drop_database_sync(url)


@pytest.fixture
def cluster(cluster_db: str, redis_child: RedisChild, pos_sim: Proc) -> Iterator[Cluster]:
    c = Cluster(cluster_db, redis_child, pos_sim.base)
    c.start_all()
    yield c
    c.stop_all()
