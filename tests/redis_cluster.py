"""A Redis Cluster of the test's own: three masters, no replicas, on spare ports, keeping nothing on
disk; the test may stop any master. It never touches the shared Redis (6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.servers import free_port


def cluster_binaries_present() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


@dataclass
class OwnRedisCluster:
    masters: int = 3
    # How long a silent master takes to be declared failed; short, so that a test reaches
    # CLUSTERDOWN in a second or two (Redis' default is 15 s).
    node_timeout_ms: int = 1000
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    directory: Path | None = None

    @property
    def url(self) -> str:
        """SatuID's cluster URL: every master is a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)

    def start(self) -> OwnRedisCluster:
        self.directory = Path(tempfile.mkdtemp(prefix="satuid-cluster-"))
        try:
            for _ in range(self.masters):
                port = free_port()
                # The bus port explicitly: port + 10000, Redis' default, may be past 65535.
                bus = free_port()
                self.processes[port] = subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-port", str(bus),
                     "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
                     "--cluster-node-timeout", str(self.node_timeout_ms),
                     "--dir", str(self.directory), "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self.ports.append(port)
            for port in self.ports:
                self._wait_listening(port)
            created = subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60)
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
            self.wait_state("ok")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.processes[port].poll() is not None:
                raise RuntimeError(f"redis-server on {port} exited")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {port} did not start")

    def running(self) -> list[int]:
        return [p for p in self.ports if p in self.processes]

    def wait_state(self, wanted: str, timeout: float = 30) -> None:
        """Until every running master reports ``cluster_state:<wanted>``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self.node(p).cluster("INFO")["cluster_state"] == wanted for p in self.running()):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not reach cluster_state:{wanted}")

    def keys_by_node(self, pattern: str) -> dict[int, set[str]]:
        """The keys each running master holds, asked of the master itself."""
        return {p: set(self.node(p).scan_iter(match=pattern, count=1000)) for p in self.running()}

    def stop_master(self, port: int) -> None:
        process = self.processes.pop(port)
        process.terminate()
        process.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.processes):
            self.stop_master(port)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
