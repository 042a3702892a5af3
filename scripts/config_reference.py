"""The configuration table of docs/operations.md, generated from the code so it cannot drift.

Every ``ServerConfig`` field (server/config.py) with its ``har-stream serve`` option, its ``HAR_STREAM_*``
variable, its default and the comment beside it in the code (else the option's help). Run from the repository:

    python scripts/config_reference.py           # print the table
    python scripts/config_reference.py --write   # replace it in docs/operations.md
    python scripts/config_reference.py --check   # exit 1 if docs/operations.md differs (a test runs this)
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from har_stream.cli import build_parser  # noqa: E402
from server.config import CONFIG_ENV, ENV_VARS, REPO_ROOT, ServerConfig  # noqa: E402

DOC = REPO / "docs" / "operations.md"
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
# Fields whose variable is read by the weights store, not by load_config.
INDIRECT_ENV = {"home": "HAR_STREAM_HOME", "manifest": "HAR_STREAM_MANIFEST", "offline": "HAR_STREAM_OFFLINE"}
# For fields whose code comment and option help say too little on their own.
NOTES = {
    "host": "address to listen on; a non-loopback one needs a token (or `insecure_no_auth`)",
    "port": "TCP port; 0 picks a free one (the log says which)",
    "device": "where models run: auto (CUDA when there is one), cpu, cuda, cuda:N",
    "max_peers": "WebRTC peers at once; one more gets 429",
    "stride": "frames between label windows (live streams widen it while the model falls behind)",
    "prompt": "CLIP's prompt template; `{label}` is replaced by each label",
    "web_dir": "the pages and their static files",
    "offline": "never download weights; a missing model is listed `missing` with its import command",
    "max_batch": "largest batch a model's batcher runs",
    "max_wait_ms": "how long a batcher waits for company before running a smaller batch",
    "torch_threads": "torch intra-op threads (default: torch's own choice)",
    "shutdown_timeout_s": "on SIGTERM/SIGINT, how long peers get to close before they are cancelled",
}


def field_comments() -> dict[str, str]:
    """The ``# comment`` after each field of ``ServerConfig`` in server/config.py."""
    source = (REPO / "server" / "config.py").read_text(encoding="utf-8")
    body = source.split("class ServerConfig", 1)[1].split("def __post_init__", 1)[0]
    out = {}
    for match in re.finditer(r"^    (\w+): [^=\n]+=[^#\n]*#\s*(.+)$", body, re.MULTILINE):
        out[match.group(1)] = match.group(2).strip()
    return out


def serve_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["serve"]._actions if a.option_strings}


def show_default(field: dataclasses.Field) -> str:
    value = field.default
    if field.name == "web_dir":
        return f"`{Path(value).relative_to(REPO_ROOT)}/` in the repository"
    if value is None or value == ():
        return "none"
    if dataclasses.is_dataclass(value):  # a settings table of its own, e.g. [backend]
        return f"the `[{field.name}]` table's defaults"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    comments, options = field_comments(), serve_options()
    env = {name: var for var, name in ENV_VARS.items()}
    rows = ["| setting (TOML key) | `serve` option | environment | default | what it does |",
            "|---|---|---|---|---|"]
    for field in dataclasses.fields(ServerConfig):
        action = options.get(field.name)
        option = " / ".join(f"`{o}`" for o in action.option_strings) if action else "—"
        variable = env.get(field.name) or INDIRECT_ENV.get(field.name)
        what = NOTES.get(field.name) or comments.get(field.name) or \
            (action.help.split(" (default")[0] if action and action.help else "")
        what = what.replace("``", "`")
        rows.append(f"| `{field.name}` | {option} | {f'`{variable}`' if variable else '—'} | "
                    f"{show_default(field)} | {cell(what)} |")
    rows.append(f"| (the settings file) | `--config` | `{CONFIG_ENV}` | none | a TOML file of the settings above |")
    return "\n".join(rows) + "\n"


def replace_in(doc: str, new_table: str) -> str:
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} lacks the {START} ... {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{new_table}{END}{tail}"


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = args.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    opts = args.parse_args()
    new_table = table()
    if not (opts.write or opts.check):
        sys.stdout.write(new_table)
        return 0
    doc = DOC.read_text(encoding="utf-8")
    updated = replace_in(doc, new_table)
    if opts.check:
        if updated != doc:
            print(f"{DOC.relative_to(REPO)}: the configuration table is out of date; run "
                  "`python scripts/config_reference.py --write`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
