"""``har-stream serve``: the web app — live camera labels over WebRTC, analysis jobs for files and URLs, and
cameras (RTSP, live URLs) watched with action events.

The server package adds this sub-command to ``har-stream`` through the ``har_stream.commands`` entry point
(pyproject.toml; found by har_stream/plugins.py), since har_stream never imports server.

Options override environment variables (``HAR_STREAM_PORT``...), which override the config file, which
overrides the defaults (see ``server/config.py``). The server (aiohttp, aiortc, torch) is imported only when
the command runs, so ``har-stream --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the live web page and the WebRTC API",
                       description="Serve the live page (camera → labels over WebRTC) and its JSON API. Options "
                                   "override HAR_STREAM_* environment variables, which override the config file.")
    p.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: 8080; 0 picks a free one)")
    p.add_argument("--model", default=None,
                   help="default model: a name (s3d, r2plus1d-18, ..., clip) or a CNN-LSTM checkpoint file "
                        "(default: s3d)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                   help="settings file (keys named like the options, e.g. max_peers = 8)")
    p.add_argument("--max-peers", type=int, default=None, help="most peers at once (default: 16)")
    p.add_argument("--clip-threshold", type=float, default=None,
                   help="ask CLIP when the model's top-1 confidence is below this; 0 disables (default: 0.4)")
    p.add_argument("--clip-model", default=None, metavar="DIR",
                   help="a local CLIP directory (default: the cached openai/clip-vit-base-patch32)")
    p.add_argument("--stride", type=int, default=None, help="frames between windows (default: 8)")
    p.add_argument("--peer-idle-timeout", dest="peer_idle_timeout_s", type=float, default=None, metavar="SECONDS",
                   help="close a peer that sends no frame for this long (default: 10)")
    p.add_argument("--ice-loopback", action="store_const", const=True, default=None,
                   help="offer 127.0.0.1 as the only ICE candidate (a browser on this machine without network)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16", "fp16"),
                   help="inference precision: auto = bf16 on a CPU with AVX512-BF16/AMX when the model's "
                        "labels agree with fp32 (measured once), else fp32; fp16 on CUDA")
    p.add_argument("--runtime", default=None, choices=("auto", "torch", "openvino", "onnxruntime"),
                   help="where the models' heavy networks run: auto = OpenVINO for the models measured faster "
                        "on it (the Kinetics 3D CNNs, the ResNet-18 CNN-LSTM) when installed, on a CPU; else "
                        "torch (default: auto)")
    p.add_argument("--compile", action="store_const", const=True, default=None,
                   help="run the models' heavy networks through torch.compile (CUDA graphs on CUDA), eager with a "
                        "logged reason when compiling fails; models on --runtime torch only (default: off)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="where analysis jobs, uploads and results are kept (default: ~/.local/share/har-stream)")
    p.add_argument("--database", default=None, metavar="URL",
                   help="where jobs, events and cameras are recorded: sqlite (default: files in --data-dir) or "
                        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, shared by several front ends "
                        "(docs/operations.md#database)")
    p.add_argument("--max-upload-mb", type=float, default=None, metavar="MB",
                   help="largest upload accepted, in MiB (default: 2048)")
    p.add_argument("--job-concurrency", type=int, default=None, metavar="N",
                   help="analysis jobs run at once; the rest queue (default: 1, so live streams keep their share)")
    p.add_argument("--allow-private-urls", action="store_const", const=True, default=None,
                   help="let analysis jobs fetch URLs on loopback or private networks (refused by default)")
    p.add_argument("--allow-hosts", dest="allow_hosts", default=None, metavar="ADDR[,ADDR...]",
                   help="addresses or networks, optionally with a port (10.0.0.5, 10.0.0.0/24, 127.0.0.1:8554), "
                        "that jobs and cameras may fetch although they are private")
    p.add_argument("--max-input-duration", dest="max_input_duration_s", type=float, default=None,
                   metavar="SECONDS", help="longest video a job analyses; longer is refused (default: 10800)")
    p.add_argument("--max-input-side", dest="max_input_side", type=int, default=None, metavar="PIXELS",
                   help="largest width or height of a job's video; larger is refused (default: 7680)")
    p.add_argument("--max-job-seconds", dest="max_job_s", type=float, default=None, metavar="SECONDS",
                   help="a job running longer is stopped and failed (default: 21600)")
    p.add_argument("--webhook", dest="webhooks", action="append", default=None, metavar="URL",
                   help="POST every action event as JSON to this URL (repeat for several)")
    p.add_argument("--mqtt-url", default=None, metavar="mqtt://HOST[:PORT][/PREFIX]",
                   help="also publish action events to this MQTT broker, on PREFIX/<camera>/events")
    p.add_argument("--event-min-seconds", dest="event_min_s", type=float, default=None, metavar="SECONDS",
                   help="an action must hold this long to open an event (default: 1)")
    p.add_argument("--inference-stall", dest="inference_stall_s", type=float, default=None, metavar="SECONDS",
                   help="a model call running longer is given up (its streams go on, /readyz reports it) "
                        "(default: 30)")
    p.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                   help="same as the global option: json = one JSON object per log line, with stream/peer/job ids")
    from har_stream.commands.analyse import add_backend_options

    add_backend_options(p, default=None)  # --backend, --ray-address: also [backend] in the config file
    security = p.add_argument_group("security (docs/security.md)")
    security.add_argument("--token", default=None,
                          help="require this token on the API, offers, websockets and media (Authorization: Bearer, "
                               "or the pages ask once); also HAR_STREAM_TOKEN")
    security.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                          help="read the token from this file's first line (keeps it out of the process list)")
    security.add_argument("--insecure-no-auth", action="store_const", const=True, default=None,
                          help="allow a non-loopback --host without a token (only behind another layer that "
                               "protects the port)")
    security.add_argument("--cors-origin", dest="cors_origins", action="append", default=None, metavar="ORIGIN",
                          help="let pages of this origin (https://host[:port]) call the API (repeat for several; "
                               "default: none)")
    security.add_argument("--tls-cert", type=Path, default=None, metavar="CERT.pem",
                          help="serve https/wss with this PEM certificate (chain); needs --tls-key")
    security.add_argument("--tls-key", type=Path, default=None, metavar="KEY.pem", help="the certificate's PEM key")
    security.add_argument("--ice-server", dest="ice_servers", action="append", default=None, metavar="URL",
                          help="STUN/TURN server for the server's WebRTC peers: stun:HOST[:PORT] or "
                               "turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp] (repeat for several)")
    security.add_argument("--ice-interface", dest="ice_interfaces", action="append", default=None,
                          metavar="ADDRESS|NAME",
                          help="offer only this host address or interface (e.g. eth0) as ICE candidate (repeat)")
    p.set_defaults(func=run)


CLI_FIELDS = ("host", "port", "model", "device", "max_peers", "clip_threshold", "clip_model", "stride",
              "peer_idle_timeout_s", "ice_loopback", "torch_threads", "precision", "runtime", "data_dir", "max_upload_mb",
              "job_concurrency", "allow_private_urls", "allow_hosts", "max_input_duration_s", "max_input_side",
              "max_job_s", "webhooks", "mqtt_url", "event_min_s", "inference_stall_s")

CLI_FIELDS = (*CLI_FIELDS, "token", "token_file", "insecure_no_auth", "cors_origins", "tls_cert", "tls_key",
              "ice_servers", "ice_interfaces")  # the security group's (docs/security.md)
CLI_FIELDS = (*CLI_FIELDS, "compile")  # --compile (har_stream/compiled.py)
CLI_FIELDS = (*CLI_FIELDS, "backend", "ray_address")  # --backend ray (har_stream/backends/, docs/scaling.md)
CLI_FIELDS = (*CLI_FIELDS, "database")  # --database (server/database.py)


def run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import run as run_server

    config = load_config({name: getattr(args, name) for name in CLI_FIELDS}, config_file=args.config)
    # the load/download progress lines, each model's precision and runtime (and why), and the address
    for name in ("server", "har_stream.weights", "har_stream.precision", "har_stream.runtime", "har_stream.compiled"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    return run_server(config)
