"""The bad-input corpus through the real server: ``har-stream serve`` in a subprocess, as a user starts it.

Every input is one test id. Each gets its documented status and a key phrase of its message (the table in
docs/operations.md, "Limits"), leaves nothing on disk (the data directory holds no file but those of the jobs
that run alongside), and the server keeps serving: an HTTP camera and a good job run beside the corpus, and the
last test checks that the job's labels are right, the camera kept delivering frames and a live WebRTC peer
(connected before the corpus, in the test process with the aioice loopback patch) still receives labels.

The redirect cases need a first hop the server will fetch and a second it must refuse, both on this machine.
The server runs WITHOUT ``--allow-private-urls``; it is told ``--allow-hosts 127.0.0.1:<port of ALLOWED>``,
the operator's way to let jobs fetch one internal host:port. Everything else on loopback is refused as it
would be in production: ``FORBIDDEN`` (another static server on 127.0.0.1) and 169.254.169.254. Every hop
goes through the server's guard proxy, so a refused hop never reaches its target: ``FORBIDDEN`` must see no
request at all, which is asserted. The server is started with ``no_proxy`` naming loopback and the metadata
address, as many cloud images do, which FFmpeg would honour by fetching those hosts around the proxy.

The run-time limit (``max_job_s``) is checked on an in-process app (a limit of 1 s needs its own server).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from har_stream.synthetic import write_motion_clip
from server.fetch_proxy import GuardProxy
from server.url_guard import AddressPolicy, parse_allowed_hosts
from tests.browser.live_server import LiveServer, free_port
from tests.helpers import bad_inputs as bad
from tests.helpers.background_peer import BackgroundPeer
from tests.helpers.clips import CHANGE_SCRIPT, check_labels_and_boundary
from tests.helpers.http_server import StaticServer
from tests.helpers.jobs import finished, jobs_client, jobs_config, submit
from tests.helpers.media import make_hls, make_video_page

MAX_UPLOAD_MB = 0.5
STRIDE = 4


@dataclass
class Corpus:
    server: LiveServer
    data: Path
    allowed: StaticServer  # 127.0.0.1:<port> in --allow-hosts
    forbidden: StaticServer  # loopback, not allowed: must never be reached
    files: Path
    good_job: str  # submitted alongside, checked at the end
    camera: str  # an HTTP camera watched alongside
    clip: Path
    peer: BackgroundPeer | None = None  # a live WebRTC peer alongside (its own loop: it outlives each test's)

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")


@pytest.fixture(scope="module")
def corpus(tiny_checkpoint: Path, change_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("bad-inputs")
    files = root / "files"
    files.mkdir()
    for name in ("allowed", "forbidden"):
        (root / name).mkdir()
    with StaticServer(root / "allowed") as allowed, StaticServer(root / "forbidden") as forbidden:
        _publish(allowed, forbidden, change_clip)
        server = LiveServer(free_port(), root / "home", root / "server.log", (
            "--model", str(tiny_checkpoint), "--data-dir", str(root / "data"), "--stride", str(STRIDE),
            "--clip-threshold", "0", "--max-upload-mb", str(MAX_UPLOAD_MB),
            "--allow-hosts", f"127.0.0.1:{allowed.port}"))
        with pytest.MonkeyPatch.context() as env:  # what cloud images set: FFmpeg would skip its proxy for these
            env.setenv("no_proxy", "localhost,127.0.0.1,::1,169.254.169.254")
            server.start()
        corpus = None
        try:
            corpus = asyncio.run(_alongside(server, root, allowed, forbidden, files, change_clip))
            corpus.peer = BackgroundPeer(server.url).start()  # the server runs --ice-loopback (LiveServer)
            yield corpus
        finally:
            if corpus is not None and corpus.peer is not None:
                corpus.peer.close()
            server.stop()


def _publish(allowed: StaticServer, forbidden: StaticServer, clip: Path) -> None:
    """What the two web servers hold: the clip on both, redirects, a page and a playlist that lead elsewhere."""
    allowed.add_file(clip, "clip.mp4")
    forbidden.add_file(clip, "clip.mp4")
    secret = forbidden.url("clip.mp4")
    port = forbidden.port
    for name, target in (("to-metadata.mp4", "http://169.254.169.254/latest/meta-data/x.mp4"),
                         ("to-loopback.mp4", secret),
                         ("to-decimal.mp4", f"http://2130706433:{port}/clip.mp4"),
                         ("to-hex.mp4", f"http://0x7f000001:{port}/clip.mp4"),
                         ("to-mapped.mp4", f"http://[::ffff:127.0.0.1]:{port}/clip.mp4"),
                         ("to-ipv6-loopback.mp4", f"http://[::1]:{port}/clip.mp4"),
                         ("page-to-metadata", "http://169.254.169.254/latest/meta-data/"),
                         ("to-allowed.mp4", allowed.url("clip.mp4")),  # stays on the allowed host: fine
                         ("camera-to-metadata.mp4", "http://169.254.169.254/latest/meta-data/cam.mp4")):
        allowed.redirect(name, target)
    make_video_page(allowed.root / "page-with-secret-video.html", secret)
    hls = make_hls(allowed.root / "clip.mp4", allowed.root / "hls")  # segments on the forbidden host:
    playlist = [line if line.startswith("#") or not line.strip() else f"http://127.0.0.1:{port}/hls/{line}"
                for line in hls.read_text().splitlines()]
    hls.with_name("elsewhere.m3u8").write_text("\n".join(playlist) + "\n")


async def _alongside(server: LiveServer, root: Path, allowed: StaticServer, forbidden: StaticServer, files: Path,
                     clip: Path) -> Corpus:
    """Start the good job and the HTTP camera that must keep working while the corpus goes through."""
    base = server.url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("video", clip.read_bytes(), filename="good.mp4")
        form.add_field("annotate", "false")
        async with http.post(f"{base}/api/jobs", data=form) as reply:
            job = await reply.json()
            assert reply.status == 202, job
        async with http.post(f"{base}/api/streams", json={"name": "alongside", "url": allowed.url("clip.mp4")}) as r:
            assert r.status == 201, await r.text()
    return Corpus(server, root / "data", allowed, forbidden, files, job["id"], "alongside", clip)


# -- helpers --------------------------------------------------------------------------------------------------

async def call(corpus: Corpus, method: str, path: str | URL, **kw: Any) -> tuple[int, Any]:
    url = URL(corpus.url + path, encoded=True) if isinstance(path, str) else path
    async with aiohttp.ClientSession() as http, http.request(method, url, **kw) as reply:
        body = await reply.json(content_type=None) if reply.content_length != 0 else None
        return reply.status, body


def error(status_body: tuple[int, Any]) -> tuple[int, str]:
    status, body = status_body
    assert isinstance(body, dict) and "error" in body, (status, body)
    assert "Traceback" not in body["error"] and "internal" not in body["error"], body
    return status, body["error"]


async def job_outcome(corpus: Corpus, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = await call(corpus, "GET", f"/api/jobs/{job_id}")
        assert status == 200, job
        if job["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.2)


def stray_files(corpus: Corpus) -> list[str]:
    """Files in the data directory's job folders other than the alongside job's (and the database's)."""
    jobs = corpus.data / "jobs"
    return sorted(str(p.relative_to(jobs)) for p in jobs.rglob("*")
                  if p.is_file() and not p.relative_to(jobs).parts[0] == corpus.good_job) if jobs.exists() else []


async def still_serving(corpus: Corpus) -> None:
    assert (await call(corpus, "GET", "/api/health"))[0] == 200
    status, camera = await call(corpus, "GET", f"/api/streams/{corpus.camera}")
    assert status == 200 and camera["state"] != "failed", camera
    assert stray_files(corpus) == []


# -- uploads --------------------------------------------------------------------------------------------------

UPLOADS = {  # id: (maker, file name, status, phrase)
    "zero-byte": (bad.zero_bytes, "empty.mp4", 400, "empty"),
    "random-bytes": (bad.random_bytes, "noise.mp4", 415, "not a video"),
    "audio-only": (bad.audio_only, "tone.m4a", 415, "no video stream (audio)"),
    "subtitles-only": (bad.subtitles_only, "subs.mkv", 415, "no video stream (subtitle)"),
    "unsupported-codec": (bad.unsupported_codec, "a64.mkv", 415, "cannot be decoded"),
    "absurd-dimensions": (bad.absurd_dimensions, "huge.mov", 413, "16000×16000 pixels"),
    "absurd-duration": (bad.absurd_duration, "weeks.mp4", 413, "lasts 131072 s"),
    "ten-times-the-limit": (lambda p: bad.random_bytes(p, size=int(10 * MAX_UPLOAD_MB * 2**20)), "big.mp4", 413,
                            f"limit of {MAX_UPLOAD_MB:g} MiB"),
}


@pytest.mark.parametrize("case", list(UPLOADS))
async def test_bad_upload(corpus: Corpus, case: str) -> None:
    maker, name, status, phrase = UPLOADS[case]
    path = maker(corpus.files / name)
    form = aiohttp.FormData()
    form.add_field("video", path.read_bytes(), filename=name)
    try:
        got, message = error(await call(corpus, "POST", "/api/jobs", data=form))
        assert got == status and phrase in message, (got, message)
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        assert case == "ten-times-the-limit"  # the server may hang up on an upload it refused mid-stream
    await still_serving(corpus)


async def test_truncated_mp4_is_taken_and_its_job_fails_with_the_reason(corpus: Corpus) -> None:
    path = bad.truncated_mp4(corpus.files / "cut.mp4")
    form = aiohttp.FormData()
    form.add_field("video", path.read_bytes(), filename="cut.mp4")
    status, job = await call(corpus, "POST", "/api/jobs", data=form)
    assert status == 202, job  # a damaged container is taken: its job fails with the decoder's reason
    job = await job_outcome(corpus, job["id"])
    assert job["state"] == "failed" and "truncated or damaged" in job["error"], job
    await still_serving(corpus)


# -- JSON bodies ----------------------------------------------------------------------------------------------

JSON_ROUTES = ("/api/jobs", "/api/webrtc/offer", "/api/streams", "/api/auth/login")


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("kind", ["deeply-nested", "huge"])
async def test_bad_json(corpus: Corpus, route: str, kind: str) -> None:
    body = bad.deep_json() if kind == "deeply-nested" else bad.huge_json()
    status, message = error(await call(corpus, "POST", route, data=body,
                                       headers={"Content-Type": "application/json"}))
    if kind == "huge":
        assert status == 413 and "too large" in message, (status, message)
    else:
        assert status == 400 and "nests 100000 levels" in message, (status, message)
    await still_serving(corpus)


# -- SDP ------------------------------------------------------------------------------------------------------

async def real_offer() -> str:
    """What aiortc (as a browser would) offers: a video track and the "labels" data channel."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    pc.createDataChannel("labels")
    offer = await pc.createOffer()
    await pc.close()
    return str(offer.sdp)


def _cut_at(sdp: str, marker: str) -> str:
    return sdp[:sdp.index(marker)]


SDP_CASES = {  # id: (make the sdp from a real offer, phrase)
    "garbage": (lambda sdp: "hello, I am not an SDP offer " * 10, 'must start with "v=0"'),
    "binary": (lambda sdp: bytes(range(256)).decode("latin-1"), 'must start with "v=0"'),
    "cut-before-media": (lambda sdp: _cut_at(sdp, "m=video"), "no valid media"),
    "cut-inside-video": (lambda sdp: _cut_at(sdp, "a=ice-ufrag"), "no data channel"),
    "cut-mid-line": (lambda sdp: _cut_at(sdp, "m=application")[:-40], "no data channel"),
    "cut-inside-datachannel": (lambda sdp: sdp[:sdp.index("a=sctp-port")], "SDP"),
    "no-ice-credentials": (lambda sdp: "\r\n".join(line for line in sdp.split("\r\n")
                                                   if not line.startswith(("a=ice-", "a=fingerprint"))), "SDP"),
}


@pytest.mark.parametrize("case", list(SDP_CASES))
async def test_bad_sdp(corpus: Corpus, case: str) -> None:
    make, phrase = SDP_CASES[case]
    sdp = make(await real_offer())
    status, message = error(await call(corpus, "POST", "/api/webrtc/offer", json={"sdp": sdp, "type": "offer"}))
    assert status == 400 and phrase in message, (status, message)
    status, health = await call(corpus, "GET", "/api/status")
    assert status == 200
    await still_serving(corpus)


# -- URLs -----------------------------------------------------------------------------------------------------

FIRST_HOP = {  # id: url; every one refused with 400 at submit
    "decimal": "http://2130706433/x.mp4",
    "hex": "http://0x7f000001/x.mp4",
    "octal": "http://0177.0.0.1/x.mp4",
    "short": "http://127.1/x.mp4",
    "ipv6-mapped": "http://[::ffff:127.0.0.1]/x.mp4",
    "ipv6-mapped-hex": "http://[::ffff:7f00:1]/x.mp4",
    "nat64": "http://[64:ff9b::7f00:1]/x.mp4",
    "ipv6-loopback": "http://[::1]/x.mp4",
    "ipv6-link-local": "http://[fe80::1]/x.mp4",
    "unspecified": "http://0.0.0.0/x.mp4",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "multicast": "http://224.0.0.1/x.mp4",
    "localhost": "http://localhost/x.mp4",
    "private": "http://192.168.1.1/x.mp4",
}


@pytest.mark.parametrize("case", list(FIRST_HOP))
async def test_private_first_hop_is_refused(corpus: Corpus, case: str) -> None:
    status, message = error(await call(corpus, "POST", "/api/jobs", json={"url": FIRST_HOP[case]}))
    assert status == 400 and "refusing to fetch" in message and "--allow-private-urls" in message, message
    await still_serving(corpus)


REDIRECTS = {  # id: (path on the allowed server, phrase of the failed job's error)
    "redirect-to-metadata": ("to-metadata.mp4", "refusing to follow the fetch to 169.254.169.254:80: it is a "
                                                "link-local address"),
    "redirect-to-loopback": ("to-loopback.mp4", "loopback address"),
    "redirect-to-decimal-loopback": ("to-decimal.mp4", "loopback address (127.0.0.1)"),
    "redirect-to-hex-loopback": ("to-hex.mp4", "loopback address (127.0.0.1)"),
    "redirect-to-ipv6-mapped-loopback": ("to-mapped.mp4", "loopback address (127.0.0.1)"),
    "redirect-to-ipv6-loopback": ("to-ipv6-loopback.mp4", "loopback address (::1)"),
    "page-redirect-to-metadata (yt-dlp)": ("page-to-metadata", "169.254.169.254"),
    "page-with-video-on-loopback (yt-dlp)": ("page-with-secret-video.html", "loopback address"),
    "hls-segments-on-loopback": ("hls/elsewhere.m3u8", "refusing to follow the fetch to 127.0.0.1"),
}


@pytest.mark.parametrize("case", list(REDIRECTS))
async def test_hops_to_private_addresses_are_refused(corpus: Corpus, case: str) -> None:
    path, phrase = REDIRECTS[case]
    status, job = await call(corpus, "POST", "/api/jobs", json={"url": corpus.allowed.url(path)})
    assert status == 202, job  # the first hop is an allowed host: the refusal comes when the job fetches
    job = await job_outcome(corpus, job["id"])
    assert job["state"] == "failed" and phrase in job["error"], job
    assert "--allow-private-urls" in job["error"]
    assert corpus.forbidden.requests == [], corpus.forbidden.requests  # never reached
    await still_serving(corpus)


URL_LIMITS = {  # id: (maker, name on the allowed server, phrase): the URL's header is checked before analysis
    "url-absurd-duration": (bad.absurd_duration, "weeks.mp4", "lasts 131072 s"),
    "url-absurd-dimensions": (bad.absurd_dimensions, "huge.mov", "16000×16000 pixels"),
}


@pytest.mark.parametrize("case", list(URL_LIMITS))
async def test_url_over_the_input_limits_fails_before_analysis(corpus: Corpus, case: str) -> None:
    maker, name, phrase = URL_LIMITS[case]
    maker(corpus.allowed.root / name)
    status, job = await call(corpus, "POST", "/api/jobs", json={"url": corpus.allowed.url(name)})
    assert status == 202, job  # a URL's header is only read when the job runs
    job = await job_outcome(corpus, job["id"])
    assert job["state"] == "failed" and phrase in job["error"] and "--max-input-" in job["error"], job
    await still_serving(corpus)


async def test_a_redirect_that_stays_on_an_allowed_host_is_followed(corpus: Corpus) -> None:
    status, job = await call(corpus, "POST", "/api/jobs", json={"url": corpus.allowed.url("to-allowed.mp4"),
                                                                "annotate": False})
    assert status == 202, job
    job = await job_outcome(corpus, job["id"])
    assert job["state"] == "done", job
    status, full = await call(corpus, "GET", f"/api/jobs/{job['id']}")
    check_labels_and_boundary(full["result"], stride=STRIDE)
    assert (await call(corpus, "DELETE", f"/api/jobs/{job['id']}"))[0] == 200
    await still_serving(corpus)


# -- cameras --------------------------------------------------------------------------------------------------

CAMERA_REFUSED = {
    "metadata": "http://169.254.169.254/latest/meta-data/cam.mp4",
    "ipv6-link-local": "rtsp://[fe80::1]/cam",
    "unspecified": "rtsp://0.0.0.0/cam",
    "multicast": "rtsp://224.1.1.1/cam",
    "mapped-link-local": "rtsp://[::ffff:169.254.1.1]/cam",
}


@pytest.mark.parametrize("case", list(CAMERA_REFUSED))
async def test_camera_on_a_refused_address(corpus: Corpus, case: str) -> None:
    status, message = error(await call(corpus, "POST", "/api/streams",
                                       json={"name": f"bad-{case}", "url": CAMERA_REFUSED[case]}))
    assert status == 400 and "refusing to fetch" in message, message
    assert (await call(corpus, "GET", f"/api/streams/bad-{case}"))[0] == 404
    await still_serving(corpus)


async def test_camera_redirected_to_link_local_shows_the_refusal(corpus: Corpus) -> None:
    url = corpus.allowed.url("camera-to-metadata.mp4")
    status, camera = await call(corpus, "POST", "/api/streams", json={"name": "redirected", "url": url})
    assert status == 201, camera  # its host is fine; where it leads is not
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, camera = await call(corpus, "GET", "/api/streams/redirected")
        if camera["error"] and "refusing to follow" in camera["error"]:
            break
        await asyncio.sleep(0.2)
    assert "refusing to follow the fetch to 169.254.169.254:80" in (camera["error"] or ""), camera
    assert camera["frames"] == 0
    assert (await call(corpus, "DELETE", "/api/streams/redirected"))[0] in (200, 202)
    await still_serving(corpus)


async def test_rtsp_camera_that_accepts_and_never_answers(corpus: Corpus) -> None:
    with bad.SilentTcpServer() as silent:
        status, camera = await call(corpus, "POST", "/api/streams",
                                    json={"name": "silent", "url": f"rtsp://127.0.0.1:{silent.port}/cam"})
        assert status == 201, camera
        deadline = time.monotonic() + 20
        while silent.accepted == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert silent.accepted >= 1
        started = time.monotonic()
        assert (await call(corpus, "GET", "/api/health"))[0] == 200  # answers while the camera hangs
        status, camera = await call(corpus, "GET", "/api/streams/silent")
        assert camera["state"] in ("connecting", "reconnecting") and camera["frames"] == 0, camera
        assert (await call(corpus, "DELETE", "/api/streams/silent"))[0] in (200, 202)
        assert time.monotonic() - started < 5  # neither the health check nor the delete waited on it
    await still_serving(corpus)


# -- path traversal -------------------------------------------------------------------------------------------

FILENAMES = {
    "dot-dot-slash": b"../../etc/passwd",
    "backslashes": b"..\\..\\x.mp4",
    "absolute": b"/etc/passwd",
    "nul-byte": b"a\x00b.mp4",
    "percent-encoded": b"%2e%2e%2f%2e%2e%2fevil.mp4",
}


@pytest.mark.parametrize("case", list(FILENAMES))
async def test_path_traversal_file_name(corpus: Corpus, case: str) -> None:
    body, kind = bad.multipart(FILENAMES[case], corpus.clip.read_bytes())
    status, job = await call(corpus, "POST", "/api/jobs", data=body, headers={"Content-Type": kind})
    if status == 202:  # taken: the name is only shown, cleaned; the file is input.<ext> in the job's folder
        shown = job["source"]["name"]
        assert not any(ch in shown for ch in "/\\\0"), shown
        stored = [p.name for p in (corpus.data / "jobs" / job["id"]).iterdir()]
        assert all(name.startswith("input.") or name.startswith(".") or name.endswith(".part") for name in stored), stored
        status, _ = await call(corpus, "DELETE", f"/api/jobs/{job['id']}")  # cancels it; its files go
        assert status == 200
        job = await job_outcome(corpus, job["id"])
        if job["state"] == "done":  # finished before the cancel: delete it
            assert (await call(corpus, "DELETE", f"/api/jobs/{job['id']}"))[0] == 200
    else:
        got, message = error((status, job))
        assert got == 400, message
    for outside in ("etc/passwd", "x.mp4", "evil.mp4", "a"):
        assert not (corpus.data / outside).exists() and not (corpus.data.parent / outside).exists()
    await still_serving(corpus)


IDS = ("/api/jobs/..%2F..%2Fetc", "/api/jobs/../x", "/api/jobs/..%2F..%2Fetc%2Fpasswd/result.json",
       "/api/jobs/%2e%2e/media", "/api/jobs/ffffffffffff/..%2F..%2F..%2Fetc%2Fpasswd",
       "/api/events/..%2F..%2Fetc%2Fpasswd", "/api/events/..%2F..%2Fetc/snapshot.jpg",
       "/api/events/../../etc/passwd/snapshot.jpg", "/api/streams/..%2F..%2Fetc")


@pytest.mark.parametrize("path", IDS)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_path_traversal_ids(corpus: Corpus, path: str, method: str) -> None:
    status, body = await call(corpus, method, path)
    assert status in (404, 405), (status, body)
    assert "root:" not in str(body)
    await still_serving(corpus)


# -- the two policies, address by address (no server needed) ------------------------------------------------

POLICY_CASES = {  # address: (jobs may fetch it, cameras may)
    "8.8.8.8": (True, True),
    "2001:4860:4860::8888": (True, True),
    "127.0.0.1": (False, True),
    "::1": (False, True),
    "::ffff:127.0.0.1": (False, True),
    "192.168.1.20": (False, True),
    "10.1.2.3": (False, True),
    "100.64.0.1": (False, True),  # carrier-grade NAT / Tailscale
    "fd00::1": (False, True),
    "169.254.169.254": (False, False),  # cloud metadata
    "::ffff:169.254.169.254": (False, False),
    "fe80::1": (False, False),
    "0.0.0.0": (False, False),
    "::": (False, False),
    "224.0.0.1": (False, False),
    "ff02::1": (False, False),
    "240.0.0.1": (False, False),  # reserved
    "2002:a9fe:a9fe::": (False, False),  # 6to4 of 169.254.169.254
}


@pytest.mark.parametrize("address", list(POLICY_CASES))
def test_address_policies(address: str) -> None:
    import ipaddress

    jobs, cameras = POLICY_CASES[address]
    ip = ipaddress.ip_address(address)
    assert (AddressPolicy.for_jobs(False).refusal(ip, 80) is None) == jobs
    assert (AddressPolicy.for_cameras(False).refusal(ip, 554) is None) == cameras
    assert AddressPolicy.for_jobs(True).refusal(ip, 80) is None  # --allow-private-urls: everything


def test_allow_hosts_entries() -> None:
    import ipaddress

    from har_stream.errors import ConfigError
    from server.config import ServerConfig

    allowed = parse_allowed_hosts(("10.0.0.5", "192.168.0.0/24", "127.0.0.1:8554", "[::1]:8080"))
    policy = AddressPolicy.for_jobs(False, allowed)
    for address, port, ok in (("10.0.0.5", 80, True), ("10.0.0.6", 80, False), ("192.168.0.77", 1, True),
                              ("127.0.0.1", 8554, True), ("127.0.0.1", 8555, False), ("::1", 8080, True),
                              ("::1", 80, False)):
        assert (policy.refusal(ipaddress.ip_address(address), port) is None) == ok, (address, port)
    for bad_entry in ("camera.lan", "10.0.0.5:http", "10.0.0.0/33", "[::1]:0"):
        with pytest.raises(ConfigError, match="allow_hosts"):
            ServerConfig(allow_hosts=(bad_entry,))


async def test_rtsp_camera_host_is_checked_again_at_each_connect() -> None:
    """No proxy for RTSP: the camera's resolver checks the host at every (re)connect, so a name that now
    answers a link-local address is refused there (shown as the camera's error, retried later)."""
    from har_stream.errors import SourceUnreachableError
    from server.camera_guard import CameraGuard

    guard = CameraGuard("rtsp://127.0.0.1:8554/cam", AddressPolicy.for_cameras(False), "cam")
    options, resolver = await guard.start()
    assert options == {} and resolver is not None
    assert resolver("rtsp://127.0.0.1:8554/cam").is_live
    with pytest.raises(SourceUnreachableError, match="refusing to fetch .*link-local"):
        resolver("rtsp://169.254.169.254:554/cam")  # what the same name might resolve to at the next reconnect
    await guard.aclose()


# -- https: the guard checks CONNECT (the proxy never sees inside TLS, so each host is checked as it is asked for)

async def _through_proxy(proxy: GuardProxy, request: bytes, then: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if then and head.startswith(b"HTTP/1.1 200"):
            writer.write(then)
            await writer.drain()
            return head + await asyncio.wait_for(reader.read(), 10)
        return head
    finally:
        writer.close()


async def test_https_connect_is_checked_host_by_host(corpus: Corpus) -> None:
    policy = AddressPolicy.for_jobs(False, parse_allowed_hosts((f"127.0.0.1:{corpus.allowed.port}",)))
    async with GuardProxy(policy, "test") as proxy:
        for target in ("169.254.169.254:443", f"127.0.0.1:{corpus.forbidden.port}",
                       f"[::ffff:127.0.0.1]:{corpus.forbidden.port}", f"2130706433:{corpus.forbidden.port}"):
            head = await _through_proxy(proxy, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 403"), (target, head)
        assert [r.target for r in proxy.refusals][-1].startswith("2130706433")
        tunnel = await _through_proxy(
            proxy, f"CONNECT 127.0.0.1:{corpus.allowed.port} HTTP/1.1\r\n\r\n".encode(),
            then=b"GET /clip.mp4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tunnel.startswith(b"HTTP/1.1 200 Connection established"), tunnel[:300]
        status_line = tunnel.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0]  # the allowed server's own answer
        assert status_line.startswith(b"HTTP/1.") and b" 200 " in status_line, tunnel[:300]
    assert corpus.forbidden.requests == []


async def test_the_guard_tries_each_checked_address_in_turn() -> None:
    """A name with two addresses, both allowed, the first refusing connections: the proxy falls back to the
    second, as a browser or FFmpeg would on their own (every address was checked before any connect)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond")
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    names = {"camera.test": ["127.0.0.2", "127.0.0.1"]}  # nothing listens on 127.0.0.2: refused at once

    async def resolver(host: str, _: int) -> list[str]:
        return names[host]

    policy = AddressPolicy.for_jobs(False, parse_allowed_hosts((f"127.0.0.2:{port}", f"127.0.0.1:{port}")))
    try:
        async with GuardProxy(policy, "test", resolver=resolver) as proxy:
            head = await _through_proxy(
                proxy, f"GET http://camera.test:{port}/x HTTP/1.1\r\nHost: camera.test\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 200"), head
            names["camera.test"] = ["127.0.0.2", "169.254.169.254"]  # a refused address among them: no connect
            head = await _through_proxy(
                proxy, f"GET http://camera.test:{port}/x HTTP/1.1\r\nHost: camera.test\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 403"), head
            names["camera.test"] = ["127.0.0.2"]  # the only one refuses: 502, saying so
            head = await _through_proxy(
                proxy, f"GET http://camera.test:{port}/x HTTP/1.1\r\nHost: camera.test\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 502"), head
    finally:
        upstream.close()
        await upstream.wait_closed()


@pytest.mark.usefixtures("one_torch_thread")
async def test_https_job_is_fetched_through_the_guard_and_its_redirects_checked(
        tiny_checkpoint: Path, change_clip: Path, tmp_path: Path) -> None:
    """FFmpeg reaches https:// through the guard with CONNECT; a redirect to https://169.254.169.254/ is a new
    CONNECT, refused. An in-process server, so the HTTPS server's port can be the one in ``allow_hosts``."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    site_app = web.Application()

    async def clip(_: web.Request) -> web.FileResponse:
        return web.FileResponse(change_clip)

    async def to_metadata(_: web.Request) -> web.Response:
        raise web.HTTPFound("https://169.254.169.254/latest/meta-data/x.mp4")

    site_app.router.add_get("/clip.mp4", clip)
    site_app.router.add_get("/to-metadata.mp4", to_metadata)
    runner = web.AppRunner(site_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = jobs_config(tiny_checkpoint, tmp_path, allow_hosts=(f"127.0.0.1:{port}",))
        async with jobs_client(config) as client:
            good = await client.post("/api/jobs", json={"url": f"https://127.0.0.1:{port}/clip.mp4", "annotate": False})
            bad_one = await client.post("/api/jobs", json={"url": f"https://127.0.0.1:{port}/to-metadata.mp4"})
            assert good.status == 202 and bad_one.status == 202
            done = await finished(client, (await good.json())["id"])
            assert done["state"] == "done", done
            check_labels_and_boundary(done["result"], stride=STRIDE)
            refused = await finished(client, (await bad_one.json())["id"])
            assert refused["state"] == "failed" and "refusing to follow the fetch to 169.254.169.254:443" in \
                refused["error"], refused
    finally:
        await runner.cleanup()


# -- limits that need their own server -----------------------------------------------------------------------

@pytest.mark.usefixtures("one_torch_thread")
async def test_a_job_over_the_run_time_limit_is_stopped_and_failed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    long_clip = write_motion_clip(tmp_path / "long.mp4", CHANGE_SCRIPT * 40, seed=3, speed=0.4, start=(0.75, 0.3))
    config = jobs_config(tiny_checkpoint, tmp_path, max_job_s=1.0)
    async with jobs_client(config) as client:
        job = await finished(client, (await submit(client, long_clip, annotate="false"))["id"])
        assert job["state"] == "failed" and "stopped after 1 s" in job["error"] and "max_job_s" in job["error"], job
        assert list((config.data_path / "jobs").rglob("*.*")) == []
        assert (await client.get("/api/health")).status == 200


# -- and everyone else was served -----------------------------------------------------------------------------

async def test_the_job_and_camera_alongside_were_unaffected(corpus: Corpus) -> None:
    job = await job_outcome(corpus, corpus.good_job, timeout=120)
    assert job["state"] == "done", job
    status, full = await call(corpus, "GET", f"/api/jobs/{corpus.good_job}")
    check_labels_and_boundary(full["result"], stride=STRIDE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, camera = await call(corpus, "GET", f"/api/streams/{corpus.camera}")
        if camera["frames"] > 0:
            break
        await asyncio.sleep(0.2)
    assert camera["frames"] > 0 and camera["state"] != "failed", camera
    assert corpus.forbidden.requests == []
    await still_serving(corpus)
    # the live peer connected before the corpus went through is still connected and still gets labels
    assert corpus.peer is not None
    before = await asyncio.to_thread(corpus.peer.wait_for_labels, 1, 30)
    assert before > 0, "the peer alongside never got a label"
    after = await asyncio.to_thread(corpus.peer.wait_for_labels, before + 3, 30)
    assert after >= before + 3 and await asyncio.to_thread(corpus.peer.state) == "connected", (before, after)
