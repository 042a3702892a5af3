"""docker-compose.yml's ``cluster`` profile (docs/scaling.md), checked without docker (none runs here): a Ray
head, one worker, PostgreSQL and two front ends on the Ray backend behind one nginx page."""

from __future__ import annotations

import re

import yaml

from tests.helpers.clips import REPO


def cluster_services() -> dict[str, dict]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return {name: s for name, s in compose["services"].items() if "cluster" in s.get("profiles", ())}


def test_cluster_profile_has_the_topology_of_docs_scaling() -> None:
    services = cluster_services()
    assert set(services) == {"ray-head", "ray-worker", "postgres", "front-1", "front-2", "proxy"}
    head = " ".join(services["ray-head"]["command"])
    assert "ray start --head --port 6379 --num-cpus 0" in head and "--block" in head  # no replicas on the head
    assert "--address ray-head:6379" in " ".join(services["ray-worker"]["command"])
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("front-1", "front-2"):
        front = services[name]
        command = " ".join(front["command"])
        assert "ray start --address ray-head:6379 --num-cpus 0" in command  # joins, runs no replica
        assert "har-stream serve" in command and "--backend ray --ray-address auto" in command
        assert {"ray-head", "ray-worker", "postgres"} <= set(front["depends_on"])
        assert "har-stream-cache:/cache" in front["volumes"]  # replicas and front ends see the same weights
    assert services["ray-head"]["build"]["args"]["EXTRAS"] == "runtimes,cluster"
    assert services["proxy"]["ports"] == ["8080:8080"] and set(services["proxy"]["depends_on"]) == {"front-1",
                                                                                                   "front-2"}


def test_the_proxy_sends_each_browser_to_one_front_end_with_websockets() -> None:
    services = cluster_services()
    mount = services["proxy"]["volumes"][0].split(":")[0]
    conf = (REPO / mount).read_text()
    assert re.findall(r"server (front-\d):8080", conf) == ["front-1", "front-2"]
    assert "ip_hash;" in conf  # a peer's offer, websocket and media must reach the front end holding it
    assert "proxy_set_header Upgrade $http_upgrade;" in conf


def test_the_image_installs_the_extras_it_is_built_with() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG EXTRAS=runtimes" in dockerfile and 'pip install -e ".[$EXTRAS]"' in dockerfile
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("ray[serve]") for dep in extras["cluster"])
