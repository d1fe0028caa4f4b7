"""A local Redis Cluster for the online store: start it, check it, stop it.

mlsd redis-cluster start [--port-base 7000] [--masters 3] [--no-aof]     (or python -m infra.redis_cluster ...)
mlsd redis-cluster status [--port-base 7000] [--masters 3]
mlsd redis-cluster stop [--port-base 7000] [--masters 3] [--remove-data]

Three masters, no replicas, on 127.0.0.1: the smallest real cluster (`redis-cli --cluster create` refuses
fewer than three masters). Each key lives on the one master that owns its hash slot (CRC16(key) mod 16384), so
a client must follow the slot map, and a command touching keys in two slots is refused (CROSSSLOT): the same
constraints a production cluster has, on one machine. Each node is `redis-server --cluster-enabled yes` with its
config, pid file, log and append-only file under <MLSD_DATA_DIR>/redis-cluster/<port>/. AOF is on by default:
a node killed and restarted comes back with what it had acknowledged (the fault tests rely on it).
`stop` signals only the processes whose pid files this module wrote.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.config import ServiceUnavailable, get_settings
from infra.console import print_rows
from infra.steps import OneLineParser

HASH_SLOTS = 16384
DEFAULT_PORT_BASE = 7000
DEFAULT_MASTERS = 3
BUS_PORT_OFFSET = 10000  # each node also listens on port + 10000 for the cluster bus (gossip, failover)
INSTALL_HINT = (
    "redis-server is not installed; install it with `apt-get install redis-server` (it brings redis-cli)"
)


@dataclass(frozen=True)
class ClusterSpec:
    """Where a local cluster lives: host, ports and the folder of its nodes' files."""

    port_base: int = DEFAULT_PORT_BASE
    masters: int = DEFAULT_MASTERS
    host: str = "127.0.0.1"
    appendonly: bool = True
    root: Path = field(default_factory=lambda: get_settings().data_dir / "redis-cluster")

    @property
    def ports(self) -> list[int]:
        return [self.port_base + i for i in range(self.masters)]

    @property
    def url(self) -> str:
        """The seed-node URL MLSD_REDIS_CLUSTER_URL takes; a client discovers the other nodes from it."""
        return f"redis://{self.host}:{self.port_base}"

    def node_dir(self, port: int) -> Path:
        return self.root / str(port)

    def pid_file(self, port: int) -> Path:
        return self.node_dir(port) / "redis.pid"


@dataclass(frozen=True)
class NodeStatus:
    port: int
    pid: int | None  # from our pid file, when that process is alive
    up: bool  # answers PING
    state: str  # cluster_state from CLUSTER INFO: ok, fail, or "-" when down
    slots_ok: int  # cluster_slots_ok as this node sees the cluster
    keys: int


@dataclass(frozen=True)
class ClusterStatus:
    spec: ClusterSpec
    nodes: list[NodeStatus]

    @property
    def healthy(self) -> bool:
        """Every node answers, says cluster_state:ok and sees all 16384 slots served."""
        return bool(self.nodes) and all(
            n.up and n.state == "ok" and n.slots_ok == HASH_SLOTS for n in self.nodes
        )

    def summary(self) -> str:
        if self.healthy:
            return (
                f"Redis Cluster at {self.spec.url} is healthy: {len(self.nodes)} masters, {HASH_SLOTS} slots"
            )
        down = [str(n.port) for n in self.nodes if not n.up]
        if len(down) == len(self.nodes):
            return f"Redis Cluster at {self.spec.url} is not running; start it with `mlsd redis-cluster start` (or `make redis-cluster`)"
        bad = [f"{n.port} ({n.state}, {n.slots_ok} slots ok)" for n in self.nodes if n.up]
        return f"Redis Cluster at {self.spec.url} is unhealthy: down {down or 'none'}; up {bad}"


def _client(host: str, port: int, timeout_s: float = 0.5) -> redis.Redis:
    """A plain client to one node (not a cluster client: status must work on a cluster that is not ok)."""
    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def _cluster_info(host: str, port: int) -> dict[str, str] | None:
    try:
        with _client(host, port) as client:
            return {k: str(v) for k, v in client.cluster("INFO").items()}
    except redis.exceptions.RedisError:
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie: a daemonized node's parent is init, which may reap it only later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _own_pid(spec: ClusterSpec, port: int) -> int | None:
    """The pid in our pid file, if that process is alive and is still a redis-server on this port."""
    try:
        pid = int(spec.pid_file(port).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if "redis-server" in cmdline and f":{port}" in cmdline else None


def seed_is_healthy(url: str) -> bool:
    """Does the node at this redis://host:port URL say its cluster is ok with every slot served?"""
    seed = url.split(",")[0].strip()
    parsed = urlparse(seed if "://" in seed else f"redis://{seed}")
    info = _cluster_info(parsed.hostname or "127.0.0.1", parsed.port or 6379)
    return (
        info is not None
        and info.get("cluster_state") == "ok"
        and int(info.get("cluster_slots_ok", 0)) == HASH_SLOTS
    )


def status(spec: ClusterSpec | None = None) -> ClusterStatus:
    """Ask every node for CLUSTER INFO; never raises for a node that is down."""
    spec = spec or ClusterSpec()
    nodes = []
    for port in spec.ports:
        info = _cluster_info(spec.host, port)
        keys = 0
        if info is not None:
            try:
                with _client(spec.host, port) as client:
                    keys = int(client.dbsize())
            except redis.exceptions.RedisError:
                keys = 0
        nodes.append(
            NodeStatus(
                port=port,
                pid=_own_pid(spec, port),
                up=info is not None,
                state=(info or {}).get("cluster_state", "-"),
                slots_ok=int((info or {}).get("cluster_slots_ok", 0)),
                keys=keys,
            )
        )
    return ClusterStatus(spec, nodes)


def _binaries() -> tuple[str, str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise ServiceUnavailable(INSTALL_HINT)
    return server, cli


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _start_node(server: str, spec: ClusterSpec, port: int) -> None:
    node_dir = spec.node_dir(port)
    node_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "port": port,
        "bind": spec.host,
        "cluster-enabled": "yes",
        "cluster-config-file": node_dir / "nodes.conf",
        "cluster-node-timeout": 2000,  # ms before a silent node is marked failing
        "appendonly": "yes" if spec.appendonly else "no",
        "save": "",  # no RDB snapshots: AOF (or nothing) is the persistence this cluster has
        "dir": node_dir,
        "daemonize": "yes",
        "pidfile": spec.pid_file(port),
        "logfile": node_dir / "redis.log",
    }
    args = [server, *(arg for name, value in options.items() for arg in (f"--{name}", str(value)))]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise ServiceUnavailable(what)
        time.sleep(0.1)


def start(spec: ClusterSpec | None = None, timeout_s: float = 30.0) -> ClusterStatus:
    """Start the nodes that are not running, create the cluster when no slot is assigned yet, wait for ok.

    Idempotent: a healthy cluster is left as it is. Nodes restarted from their nodes.conf rejoin the cluster
    they belonged to (with their AOF data) instead of forming a new one.
    """
    spec = spec or ClusterSpec()
    if spec.masters < 3:
        raise ValueError(
            f"a Redis Cluster needs at least 3 masters (redis-cli refuses fewer), got {spec.masters}"
        )
    server, cli = _binaries()
    current = status(spec)
    if current.healthy:
        return current
    missing = [n.port for n in current.nodes if not n.up]
    for port in missing:
        if _port_taken(spec.host, port) or _port_taken(spec.host, port + BUS_PORT_OFFSET):
            raise ServiceUnavailable(
                f"port {port} or {port + BUS_PORT_OFFSET} on {spec.host} is taken by something that is "
                "not a Redis Cluster node; pick other ports with --port-base"
            )
    for port in missing:
        _start_node(server, spec, port)
    _wait(
        lambda: all(_cluster_info(spec.host, p) is not None for p in spec.ports),
        timeout_s,
        f"the redis-server nodes on ports {spec.ports} did not answer; see {spec.root}/<port>/redis.log",
    )
    infos = [_cluster_info(spec.host, p) or {} for p in spec.ports]
    if all(int(i.get("cluster_slots_assigned", 0)) == 0 for i in infos):
        nodes = [f"{spec.host}:{p}" for p in spec.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
    _wait(
        lambda: status(spec).healthy,
        timeout_s,
        f"{status(spec).summary()}; if the nodes belong to an older cluster, run "
        "`python -m infra.redis_cluster stop --remove-data` and start again",
    )
    return status(spec)


def stop(spec: ClusterSpec | None = None, remove_data: bool = False, timeout_s: float = 10.0) -> list[int]:
    """SIGTERM the nodes this module started (by pid file), wait for them to exit; returns the ports stopped.

    SIGTERM lets a node flush its append-only file. With remove_data the node folders go too, so the next
    start forms a new, empty cluster.
    """
    spec = spec or ClusterSpec()
    stopped = []
    for port in spec.ports:
        pid = _own_pid(spec, port)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
        stopped.append(port)
    if remove_data:
        for port in spec.ports:
            shutil.rmtree(spec.node_dir(port), ignore_errors=True)
        if spec.root.exists() and not any(spec.root.iterdir()):
            spec.root.rmdir()
    return stopped


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port_base(masters: int = DEFAULT_MASTERS, host: str = "127.0.0.1", tries: int = 200) -> int:
    """A base port whose `masters` consecutive ports and their bus ports (+10000) are all free (for tests).

    Drawn below the kernel's ephemeral range (bus ports included): a port from that range that is free when
    checked can be taken by any outgoing connection (a Redis client, locust) before redis-server binds it.
    """
    low, _ = _ephemeral_range()
    top = low - BUS_PORT_OFFSET - masters  # the bus ports stay below the ephemeral range too
    if top <= 1024:
        top = 65535 - BUS_PORT_OFFSET - masters  # an unusual range: fall back to any unprivileged port
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(tries):
        base = rng.randrange(1025, top)
        ports = [base + i for i in range(masters)]
        if not any(_port_taken(host, p) or _port_taken(host, p + BUS_PORT_OFFSET) for p in ports):
            return base
    raise RuntimeError(f"no {masters} consecutive free ports (with their bus ports) found on {host}")


def print_status(current: ClusterStatus) -> None:
    print_rows(
        f"Redis Cluster {current.spec.url} ({current.spec.root})",
        ["port", "pid", "up", "cluster_state", "slots ok", "keys"],
        [[str(n.port), str(n.pid or "-"), n.up, n.state, n.slots_ok, n.keys] for n in current.nodes],
    )


def main(argv: list[str] | None = None) -> int:
    """`mlsd redis-cluster start|stop|status`; exit 0 when the command did what it says."""
    # `python -m infra.redis_cluster` runs the same; the usage line names the command users type
    parser = OneLineParser(prog="mlsd redis-cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE, help="first node's port")
    parser.add_argument("--masters", type=int, default=DEFAULT_MASTERS, help="number of masters (>= 3)")
    parser.add_argument("--no-aof", action="store_true", help="start the nodes without the append-only file")
    parser.add_argument("--remove-data", action="store_true", help="with stop: delete the nodes' folders")
    args = parser.parse_args(argv)
    spec = ClusterSpec(port_base=args.port_base, masters=args.masters, appendonly=not args.no_aof)
    try:
        if args.command == "start":
            was_healthy = status(spec).healthy
            current = start(spec)
            print_status(current)
            print(("already running: " if was_healthy else "started: ") + current.summary())
            print(f"use it with MLSD_ONLINE_STORE=redis_cluster MLSD_REDIS_CLUSTER_URL={spec.url}")
            return 0
        if args.command == "stop":
            ports = stop(spec, remove_data=args.remove_data)
            removed = f"; removed {spec.root}" if args.remove_data else ""
            print(f"stopped the nodes on ports {ports or 'none (no node of ours was running)'}{removed}")
            return 0
        current = status(spec)
        print_status(current)
        print(current.summary())
        return 0 if current.healthy else 1
    except (ServiceUnavailable, ValueError, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else ""
        )
        print(f"error: {exc}{' ' + detail if detail else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
