"""Hosts of a scaled-out job: who this host is, what its files are called, which keys and (locally)
which cores it gets, and how the hosts' evaluations add up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from driftloop.hosts import Hosts, ResourceConfigError, core_shares, is_part, part_files, shard_by_key
from driftloop.scores import Evaluation


def test_the_host_comes_from_sagemakers_resource_config(tmp_path: Path) -> None:
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
                                "network_interface_name": "eth0"}))
    assert Hosts.read(path) == Hosts.of_job(2)[1]
    assert Hosts.read(tmp_path / "absent.json") == Hosts()  # outside SageMaker: the one host
    path.write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}))
    with pytest.raises(ResourceConfigError, match="algo-3"):
        Hosts.read(path)


def test_one_host_keeps_the_plain_names_and_each_of_several_its_own(tmp_path: Path) -> None:
    assert Hosts().part_name("predictions.csv") == "predictions.csv"
    names = [host.part_name("predictions.csv") for host in Hosts.of_job(2)]
    assert names == ["predictions-algo-1.csv", "predictions-algo-2.csv"]
    for name in [*names, "predictions.csv.tmp", "summary-algo-1.json"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in part_files(tmp_path, "predictions.csv")] == names
    assert not is_part("predictions.csv.tmp", "predictions.csv")


def test_sharding_by_key_gives_each_key_to_exactly_one_host() -> None:
    keys = [f"batch/{c}/{i}.png" for c in "abc" for i in range(5)]
    shares = shard_by_key(keys, 4)
    assert sorted(k for share in shares for k in share) == sorted(keys)
    assert {len(share) for share in shares} == {3, 4}
    assert shard_by_key(keys[:2], 3)[2] == []  # more hosts than objects: one gets nothing


def test_the_hosts_evaluations_add_up_to_the_batchs() -> None:
    classes = ["a", "b"]
    first = Evaluation(n=3, classes=classes, accuracy=2 / 3, loss=0.6, confusion_matrix=[[2, 1], [0, 0]])
    second = Evaluation(n=1, classes=classes, accuracy=0.0, loss=2.0, confusion_matrix=[[0, 0], [1, 0]])
    merged = Evaluation.merge([first, second])
    assert (merged.n, merged.confusion_matrix, merged.accuracy) == (4, [[2, 1], [1, 0]], 0.5)
    assert merged.loss == pytest.approx((0.6 * 3 + 2.0) / 4)
    unscored = Evaluation(n=2, classes=classes, reason="2 image(s) have no label")
    assert Evaluation.merge([first, unscored]).reason == "2 image(s) have no label"
    assert Evaluation.merge([first]) is first


def test_local_hosts_divide_the_cores_and_share_them_only_when_fewer_than_hosts() -> None:
    assert core_shares(1, [0, 1]) == [(0, 1)]
    assert core_shares(2, [0, 1]) == [(0,), (1,)]
    assert core_shares(2, [4, 0, 2]) == [(0, 2), (4,)]
    assert core_shares(3, [0, 1]) == [(0,), (1,), (0,)]
    shares = core_shares(2)  # this process's own cores
    assert all(shares) and sum(map(len, shares)) >= min(2, len(os.sched_getaffinity(0)))
