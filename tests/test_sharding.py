"""Sharding: every target probed by exactly one replica; growing from N to N+1 replicas moves about 1/(N+1)."""

from __future__ import annotations

import httpx
import pytest
from servers import DaemonProcess, wait_until

from monitor.sharding import Shard, owner, parse_shard

CHAT = "/v1/chat/completions"
NAMES = [f"target-{i:04d}" for i in range(1000)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_growing_from_n_to_n_plus_1_replicas_moves_about_one_in_n_plus_1(n):
    before = {name: owner(name, n) for name in NAMES}
    after = {name: owner(name, n + 1) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert abs(len(moved) / len(NAMES) - 1 / (n + 1)) <= 0.05, len(moved)
    assert all(after[name] == n for name in moved)  # only to the new replica: nothing moves between the old ones


def test_each_replica_gets_a_fair_share():
    counts = [sum(owner(name, 4) == k for name in NAMES) for k in range(4)]
    assert all(200 <= c <= 300 for c in counts), counts


def test_shards_parse_from_text_and_from_a_statefulset_pods_name():
    assert parse_shard("1/3") == Shard(1, 3)
    assert parse_shard("auto/3", hostname="sse-monitor-2") == Shard(2, 3)
    for bad, why in [("3/3", "below 3"), ("1", "K/N"), ("a/b", "K/N"), ("0/0", "at least 1")]:
        with pytest.raises(ValueError, match=why):
            parse_shard(bad)
    with pytest.raises(ValueError, match="host name is 'laptop'"):
        parse_shard("auto/2", hostname="laptop")


def test_three_daemons_from_one_config_probe_every_target_exactly_once(simulator, tmp_path):
    names = [f"t{i}" for i in range(12)]
    config = "defaults: {interval: 1s}\nscheduler: {jitter: 0s}\ntargets:\n" + "".join(
        f"  - name: {name}\n    url: \"{simulator}{CHAT}?ttft=0&tokens=1&rate=100\"\n" for name in names)
    daemons = []
    try:
        for k in range(3):
            workdir = tmp_path / f"shard{k}"
            workdir.mkdir()
            daemons.append(DaemonProcess(config, workdir, args=("--shard", f"{k}/3")))
        owned = []
        for k, d in enumerate(daemons):
            api = httpx.get(d.url + "/api/v1/targets", timeout=5)
            assert api.headers["x-sse-monitor-shard"] == f"{k}/3"
            owned.append(set(api.json()))
            assert owned[-1] == {name for name in names if owner(name, 3) == k}
        assert set().union(*owned) == set(names) and sum(map(len, owned)) == len(names)
        for k, d in enumerate(daemons):
            wait_until(lambda d=d, k=k: all(d.runs(name) >= 2 for name in owned[k]), 20, f"shard {k}'s runs")
            text = d.metrics_text()
            assert all(f'target="{name}"' not in text for name in set(names) - owned[k])  # only its own series
    finally:
        for d in daemons:
            d.stop()


def test_a_bad_shard_is_a_usage_error(tmp_path):
    from conftest import sse_monitor

    path = tmp_path / "c.yaml"
    path.write_text("targets: []\n")
    proc = sse_monitor("run", "--config", str(path), "--shard", "4/3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "--shard: expected a shard index below 3, got 4 (from '4/3')"
