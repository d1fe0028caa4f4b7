"""The local Redis Cluster: starts healthy, start is idempotent, AOF survives a restart, stop kills only its own."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import redis

from infra import redis_cluster
from infra.config import ServiceUnavailable
from infra.redis_cluster import HASH_SLOTS, ClusterSpec


def _own_spec(tmp_path: Path, appendonly: bool = True) -> ClusterSpec:
    return ClusterSpec(port_base=redis_cluster.free_port_base(), appendonly=appendonly, root=tmp_path / "rc")


def _cluster_client(spec: ClusterSpec) -> redis.RedisCluster:
    return redis.RedisCluster(host=spec.host, port=spec.port_base, socket_timeout=2)


@pytest.mark.redis
def test_session_cluster_is_healthy(redis_cluster_url: str) -> None:
    assert redis_cluster.seed_is_healthy(redis_cluster_url)
    client = redis.RedisCluster.from_url(redis_cluster_url, socket_timeout=2)
    assert len(client.get_primaries()) >= 3
    covered = sum(end - start + 1 for start, end in client.cluster_slots())
    assert covered == HASH_SLOTS
    client.close()


@pytest.mark.redis
def test_start_is_idempotent_and_aof_survives_a_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_server_binary: str
) -> None:
    spec = _own_spec(tmp_path)
    try:
        first = redis_cluster.start(spec)
        assert first.healthy and [n.port for n in first.nodes] == spec.ports
        pids = [n.pid for n in first.nodes]
        assert all(pids)

        # a second start, from the command line too, finds it healthy and starts nothing
        assert redis_cluster.main(["start", "--port-base", str(spec.port_base)]) == 0
        assert "already running" in capsys.readouterr().out
        again = redis_cluster.start(spec)
        assert [n.pid for n in again.nodes] == pids

        # keys land on every master (a cluster, not one node), and come back after stop + start (AOF)
        client = _cluster_client(spec)
        for i in range(30):
            client.set(f"user:{i}", i)
        assert all(n.keys > 0 for n in redis_cluster.status(spec).nodes)
        client.close()
        assert redis_cluster.stop(spec) == spec.ports
        assert not any(redis_cluster._running(pid) for pid in pids)
        down = redis_cluster.status(spec)
        assert not down.healthy and "not running" in down.summary()

        redis_cluster.start(spec)
        client = _cluster_client(spec)
        assert [int(client.get(f"user:{i}")) for i in range(30)] == list(range(30))
        client.close()
    finally:
        redis_cluster.stop(spec, remove_data=True)
    assert not spec.root.exists()


def test_cli_status_of_a_cluster_that_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = redis_cluster.free_port_base()
    assert redis_cluster.main(["status", "--port-base", str(port)]) == 1
    assert "is not running; start it with `mlsd redis-cluster start`" in capsys.readouterr().out
    assert redis_cluster.main(["stop", "--port-base", str(port)]) == 0
    assert "no node of ours was running" in capsys.readouterr().out


def test_missing_redis_server_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no redis-cli
    with pytest.raises(ServiceUnavailable, match=r"apt-get install redis-server"):
        redis_cluster.start(_own_spec(tmp_path))
    assert redis_cluster.main(["start"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "apt-get install redis-server" in err


def test_fewer_than_three_masters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 3 masters"):
        redis_cluster.start(ClusterSpec(masters=2, root=tmp_path))


def test_a_port_taken_by_something_else_is_named(tmp_path: Path, redis_server_binary: str) -> None:
    spec = _own_spec(tmp_path)
    with socket.socket() as squatter:
        squatter.bind((spec.host, spec.port_base + 1))
        squatter.listen()
        with pytest.raises(ServiceUnavailable, match=f"port {spec.port_base + 1} .* --port-base"):
            redis_cluster.start(spec)
    assert not any(n.up for n in redis_cluster.status(spec).nodes)  # checked before starting any node


def test_stop_signals_only_processes_it_started(tmp_path: Path) -> None:
    spec = _own_spec(tmp_path)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        spec.node_dir(spec.port_base).mkdir(parents=True)
        spec.pid_file(spec.port_base).write_text(f"{bystander.pid}\n")  # a stale pid file, reused pid
        assert redis_cluster.stop(spec, remove_data=True) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_free_ports_are_drawn_below_the_ephemeral_range() -> None:
    """Outgoing connections take ephemeral ports at any moment: a cluster drawn there can lose a port between the
    check and redis-server's bind (a start-up flake seen in CI)."""
    low, _ = redis_cluster._ephemeral_range()
    for _ in range(20):
        base = redis_cluster.free_port_base()
        assert base > 1024 and base + 2 + redis_cluster.BUS_PORT_OFFSET < low
