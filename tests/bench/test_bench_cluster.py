"""Unit tests of the multi-node parts of the harness that need no server: owner-local vs forwarded
classification, the failover victim and affected members, takeover figures, per-member maps crossing
processes, and the target list of ``--workers 1,2``."""

from __future__ import annotations

import argparse

import pytest

from bench import cluster
from bench.cli import _target_choice, _target_names
from bench.stats import Stats


def test_owner_local_split_leaves_unknowns_out() -> None:
    nodes = {"1/0": "n0", "1/1": "n1", "2/0": "n1", "2/1": None, "3/0": "n2"}
    owners = {"1": "n0", "2": "n1", "3": None}
    local = cluster.owner_local(nodes, owners)
    assert local == {"1/0": True, "1/1": False, "2/0": True}
    assert cluster.split_counts(local, members=len(nodes)) == {"owner_local": 2, "forwarded": 1, "unknown": 2}


def test_table_ids_with_slashes_in_member_names() -> None:
    # a member name is "<table id>/<index>": only the last slash separates them
    assert cluster.owner_local({"a/b/3": "n1"}, {"a/b": "n1"}) == {"a/b/3": True}


def test_pick_victim_most_tables_first_on_ties() -> None:
    owners = {"1": "n1", "2": "n2", "3": "n1", "4": None, "5": "n2"}
    assert cluster.pick_victim(owners, ["n0", "n1", "n2"]) == ("n1", 2)
    assert cluster.pick_victim({}, ["n0", "n1"]) == ("n0", 0)


def test_affected_members_by_connection_or_owner() -> None:
    names = ["1/0", "1/1", "2/0", "2/1"]
    nodes = {"1/0": "n0", "1/1": "n1", "2/0": "n1", "2/1": "n2"}
    owners = {"1": "n0", "2": "n2"}
    # table 1 is owned by n0 (both its members lose service); 2/0 is on n1 and its owner n2 survives
    assert cluster.affected_members(names, nodes, owners, "n0") == {"1/0", "1/1"}
    assert cluster.affected_members(names, nodes, owners, "n2") == {"2/0", "2/1"}


def test_takeover_from_the_kill_and_members_never_served_again() -> None:
    kill = 100.0
    first = {"a": 100.5, "b": 101.0, "c": 106.0, "d": 99.9, "x": 100.001}
    t = cluster.takeover(first, kill, ["a", "b", "c", "d", "e"])
    # d acked only before the kill (as good as no ack after it), e never acked again
    assert t["members"] == 5 and t["acked_again"] == 3 and t["never_acked_again"] == 2
    assert t["p50_ms"] == 1000.0 and t["p99_ms"] == 6000.0 and t["max_ms"] == 6000.0
    assert cluster.takeover(first, kill, [])["p50_ms"] is None


def test_percentile_nearest_rank() -> None:
    vals = [float(i) for i in range(1, 101)]
    assert cluster.percentile(vals, 50) == 50.0
    assert cluster.percentile(vals, 99) == 99.0
    assert cluster.percentile([3.0], 99) == 3.0
    assert cluster.percentile([], 50) is None


def test_extra_latency_is_forwarded_minus_local() -> None:
    local = {"count": 10, "p50_ms": 1.0, "p99_ms": 3.0}
    fwd = {"count": 10, "p50_ms": 1.6, "p99_ms": 4.5}
    assert cluster.extra_latency(local, fwd) == {"p50_ms": 0.6, "p99_ms": 1.5}
    assert cluster.extra_latency(local, {"count": 0}) == {}


def test_per_member_maps_merge_across_processes() -> None:
    a, b = Stats(), Stats()
    a.put("first_ack_after_kill", "1/0", 10.5)
    b.put("first_ack_after_kill", "2/0", 11.25)
    merged = Stats.merged([a.to_wire(), b.to_wire()])
    assert merged.maps["first_ack_after_kill"] == {"1/0": 10.5, "2/0": 11.25}


def test_workers_list_becomes_one_target_each() -> None:
    assert _target_names("tableside,raw", "cart", [1, 2]) == ["tableside-1w", "tableside-2w", "raw"]
    assert _target_names("all", "cart", []) == ["tableside", "raw", "socketio"]
    assert _target_names("all", "failover", [2]) == ["tableside-2w"]
    assert _target_choice("tableside, raw") == "tableside,raw"
    with pytest.raises(argparse.ArgumentTypeError):
        _target_choice("tableside,nope")
