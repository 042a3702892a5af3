"""Shared fixtures. Keep each one small and real (no mocks): servers bind 127.0.0.1 and stop on teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.http_server import StaticServer


@pytest.fixture
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    """A Range-capable static HTTP server over an empty temp folder (``server.root``); stopped after the test."""
    with StaticServer(tmp_path_factory.mktemp("www")) as server:
        yield server



# -- a model trained in the test run, and clips it knows ------------------------------------------------

import hashlib  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from filelock import FileLock  # noqa: E402

from har_stream.synthetic import write_motion_clip  # noqa: E402
from tests.helpers import tiny_model  # noqa: E402
from tests.helpers.clips import CHANGE_SCRIPT, REPO  # noqa: E402


def _source_digest() -> str:
    """Retrain when the recipe, the architecture or the frame preparation changes; reuse the model otherwise."""
    import inspect

    from har_stream import preprocess
    from har_stream.models import cnn_lstm

    h = hashlib.sha256()
    for rel in ("tests/helpers/tiny_model.py", "har_stream/synthetic.py"):
        h.update((REPO / rel).read_bytes())
    for obj in (cnn_lstm.CnnLstmConfig, cnn_lstm.TinyEncoder, cnn_lstm.AttentionPool, cnn_lstm.TemporalHead,
                cnn_lstm.CnnLstmNet, preprocess.FramePreparer, preprocess.resized_size):
        h.update(inspect.getsource(obj).encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN-LSTM trained on synthetic motion clips, saved as a real checkpoint.

    Trained once per recipe (about a minute on 2 cores), then reused from the test cache.
    """
    root = Path(os.environ.get("HAR_STREAM_TEST_CACHE", Path.home() / ".cache" / "har-stream-tests"))
    root.mkdir(parents=True, exist_ok=True)  # shared by xdist workers, and by later runs on this machine
    path = root / f"tiny-cnn-lstm-{_source_digest()}.pt"
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # the other half runs tests beside us
            try:
                tiny_model.train_tiny_cnn_lstm(path)
            finally:
                torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="session")
def change_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 fps 160x120 H.264: moving left for 1.6 s, then holding still for 1.6 s."""
    folder = tmp_path_factory.mktemp("clips")
    return write_motion_clip(folder / "left_then_still.mp4", CHANGE_SCRIPT, seed=6, speed=0.4,
                             start=(0.75, 0.3))


@pytest.fixture(scope="session")
def change_clip_30fps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same story at 30 fps and 320x240, so the engine must sample and resize."""
    folder = tmp_path_factory.mktemp("clips30")
    return write_motion_clip(folder / "left_then_still_30fps.mp4", CHANGE_SCRIPT, seed=7, speed=0.4,
                             start=(0.75, 0.3), fps=30.0, width=320, height=240)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: a private weights cache, offline (no network here anyway)."""
    env = dict(os.environ)
    # One intra-op thread per CLI process: tests run in parallel on few cores, and oversubscribed torch
    # thread pools spin instead of working.
    env.update(HAR_STREAM_HOME=str(tmp_path / "home"), HAR_STREAM_OFFLINE="1", NO_COLOR="1",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for the test: tiny models gain nothing from a pool, and on a busy 2-core
    machine (tests run in parallel) the pool's spinning makes them many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ice_loopback_patch() -> Iterator[None]:
    """aioice offers no loopback candidates; with this, every peer in this process uses 127.0.0.1 only."""
    from server.ice import ice_loopback

    with ice_loopback():
        yield


@pytest.fixture(autouse=True, scope="session")
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A server a test starts without ``data_dir`` keeps its jobs and events in a temp folder (its default is
    ``$XDG_DATA_HOME/har-stream``), never in the user's ``~/.local/share``; subprocess servers inherit it."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XDG_DATA_HOME", None)
        else:
            os.environ["XDG_DATA_HOME"] = saved


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-minutes", type=float, default=None, metavar="MINUTES",
                     help="run tests/test_soak.py's soak for this long (default: $HAR_STREAM_SOAK_MINUTES, else "
                          "the short CI run of about 90 s); give --timeout 0 or one long enough")


from tests.helpers.postgres_server import PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 for the session (tests/helpers/postgres_server.py); each test asks it for a
    fresh database with ``await postgres.create_database()``."""
    with PostgresServer.start() as server:
        yield server
