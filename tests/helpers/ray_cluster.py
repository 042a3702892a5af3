"""A real Ray (with Serve) for the ``--backend ray`` tests: started once per test session, on loopback, 2 CPUs.

Starting Ray and a Serve deployment costs tens of seconds on a loaded machine, so every test of a session
shares this one; tests reach it through ``RayBackend`` (which finds Ray already initialised in this process).
Import the fixture into a test module: ``from tests.helpers.ray_cluster import ray_session  # noqa: F401``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from har_stream.backends.base import BackendConfig

# One replica, no autoscaling: the fault test kills "the" replica and waits for its replacement.
TEST_BACKEND = BackendConfig(kind="ray", ray_address="local", num_replicas=1, num_cpus=1.0, max_batch_size=8,
                             request_timeout_s=90.0, app_prefix="test")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Ray on 127.0.0.1 in this process (no dashboard), Serve without an HTTP proxy; shut down at the end."""
    import ray
    from ray import serve

    temp = Path(tempfile.mkdtemp(prefix="hr", dir="/tmp"))  # short: Ray's unix sockets live under it
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=str(temp), logging_level=logging.WARNING, configure_logging=False)
    try:
        serve.start(proxy_location="Disabled")
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def replica_actors(app: str) -> list[str]:
    """Names of the Serve replica actors of application ``app`` (named actors in the ``serve`` namespace; read
    from the GCS, so no dashboard is needed), to kill one in a fault test."""
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::") and f"::{app}#" in a["name"]]


def kill_replica(name: str) -> None:
    """Kill one replica actor as a crash would (no graceful shutdown); Serve starts a replacement."""
    import ray

    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
