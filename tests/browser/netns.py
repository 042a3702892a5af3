"""Run browser tests inside a private network namespace (``unshare -n``), whoever starts pytest.

Why: the browser and the server must not reach anything beyond this machine; inside ``unshare -n`` there is
nothing but loopback. TESTING.md runs ``unshare -n sh -c 'ip link set lo up; pytest tests/browser'``; a plain
``pytest`` (CI: ``pytest -n auto tests/``) gets the same isolation from here. Outside a namespace, the first
``private_network`` test of a module to run starts ONE child pytest under ``unshare -n`` for all of that
module's selected ``private_network`` tests (one pytest start-up, shared fixtures), and every test then takes
its own outcome from the child's junit report: passed, failed with the child's failure text, or skipped with
its reason. xdist workers share that one child run through a file lock in the run's temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
from filelock import FileLock

IN_NETNS_ENV = "HAR_STREAM_IN_NETNS"  # set in the child pytest that runs inside `unshare -n`
MARKER = "private_network"
CHILD_TIMEOUT_S = 280.0  # the whole module; below the suite's default per-test timeout (300 s)
CHILD_TEST_TIMEOUT_S = 120  # each test inside the child


def in_private_network() -> bool:
    """True in the child run, or when this process already sees no network interface but loopback."""
    if os.environ.get(IN_NETNS_ENV) == "1":
        return True
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


@cache
def cannot_isolate() -> str | None:
    """Why this machine cannot make a private network namespace, or None when it can."""
    if os.geteuid() != 0:
        return "the browser tests run inside `unshare -n`, which needs root (CI runs as root)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the browser tests need `{tool}` to make a private network namespace (util-linux / iproute2)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"`unshare -n` does not work here ({probe.stderr.strip() or probe.returncode}); no private network"
    return None


def needs_delegation(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None and not in_private_network()


def run_in_child(item: pytest.Item) -> None:
    """Give ``item`` its outcome from the module's child run (started now if no one has yet)."""
    results = _module_results(item)
    outcome, message = results.get(item.name, ("missing", results.get("", ("", ""))[1]))
    if outcome == "passed":
        return
    if outcome == "skipped":
        pytest.skip(message.splitlines()[0] if message else "skipped inside the private network namespace")
    if outcome == "failed":
        pytest.fail(f"inside `unshare -n`:\n{message}", pytrace=False)
    pytest.fail(f"the run under `unshare -n` reported nothing for this test:\n{message}", pytrace=False)


def _shared_folder(config: pytest.Config) -> Path:
    """This run's temp folder, shared by its xdist workers (each has its own sub-folder of it)."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # tmp_path_factory's
    return base.parent if hasattr(config, "workerinput") else base


def _module_results(item: pytest.Item) -> dict[str, tuple[str, str]]:
    folder = _shared_folder(item.config) / f"netns-{item.path.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.json"
    with FileLock(str(folder / "lock")):
        if not results.exists():
            names = [i for i in item.session.items if i.path == item.path and i.get_closest_marker(MARKER)]
            results.write_text(json.dumps(_run_child(item.config, [i.nodeid for i in names], folder)))
    return {name: (outcome, message) for name, (outcome, message) in json.loads(results.read_text()).items()}


def _run_child(config: pytest.Config, nodeids: list[str], folder: Path) -> dict[str, tuple[str, str]]:
    junit = folder / "child.xml"
    args = [sys.executable, "-m", "pytest", *nodeids, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
            f"--basetemp={folder / 'basetemp'}"]
    if config.pluginmanager.hasplugin("xdist"):
        args += ["-n", "0"]
    if config.pluginmanager.hasplugin("timeout"):
        args += [f"--timeout={CHILD_TEST_TIMEOUT_S}"]
    command = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *args]
    env = {**os.environ, IN_NETNS_ENV: "1", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(command, cwd=config.rootpath, env=env, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        return {"": ("missing", f"the run under `unshare -n` passed {CHILD_TIMEOUT_S:.0f} s:\n{_tail(err.stdout)}")}
    results = _parse_junit(junit)
    results[""] = ("missing", f"child exit {done.returncode}:\n{_tail(done.stdout)}\n{_tail(done.stderr)}")
    return results


def _parse_junit(junit: Path) -> dict[str, tuple[str, str]]:
    """test name → (passed | failed | skipped, failure text or skip reason)."""
    if not junit.exists():
        return {}
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag, kind in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                outcome = kind
                message = (node.get("message") if kind == "skipped" else node.text or node.get("message")) or ""
                break
        results[case.get("name", "")] = (outcome, message.strip())
    return results


def _tail(text: str | bytes | None, limit: int = 6000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-limit:]
