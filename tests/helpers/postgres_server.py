"""A real PostgreSQL server for the shared-database tests: Debian's ``postgresql`` binaries, a temp data folder,
a free 127.0.0.1 port, trust logins; once per test session (per xdist worker).

    with PostgresServer.start() as pg:
        url = await pg.create_database()      # postgresql://har@127.0.0.1:<port>/<fresh name>
        pg.url("postgres")                    # any database on it

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system user that the Debian
package creates (else ``nobody``), in a temp folder owned by that user (Popen's ``user=``, so it is our child
and a SIGINT - PostgreSQL's fast shutdown - reaches it). ``fsync`` is off: the tests check what
front ends see of each other, not durability.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

USER = "har"


def postgres_bin() -> Path:
    """The newest installed server's bin folder (``initdb``, ``postgres``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL's server binaries are missing: apt-get install -y postgresql "
                       "(scripts/setup.sh --test installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.port = port
        self.process = process

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    @classmethod
    def start(cls, timeout: float = 60.0) -> PostgresServer:
        bin_dir = postgres_bin()
        root = Path(tempfile.mkdtemp(prefix="har-pg-"))
        run_as: dict[str, object] = {}  # Popen's user/group: the server is our child, so signals reach it
        if os.geteuid() == 0:
            user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
            if user is None:
                raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run "
                                   "PostgreSQL as")
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        data = root / "data"
        initdb = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                                 "-E", "UTF8", "--locale=C", "--no-sync"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, cwd=root,
                                **run_as)  # type: ignore[call-overload]
        if initdb.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}")
        port = _free_port()
        log = open(root / "server.log", "wb")  # noqa: SIM115 - owned by the process's lifetime
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(root), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=root,
            **run_as)  # type: ignore[call-overload]
        log.close()
        server = cls(root, port, process)
        deadline = time.monotonic() + timeout
        while not server._ready():
            if process.poll() is not None or time.monotonic() > deadline:
                text = (root / "server.log").read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n{text}")
            time.sleep(0.1)
        return server

    def _ready(self) -> bool:
        ready = subprocess.run([str(postgres_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", USER, "-d", "postgres"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        return ready.returncode == 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: ends open sessions, no waiting
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
