"""Renders the top-level nginx.conf template for one machine, finds and checks the nginx binary.

The template marks machine-specific values with `{{ NAME }}` (comment lines are left as they
are). A line holding a list value is
written once per item (dropped when the list is empty), so the numbers on that line (e.g. the
upstream's max_fails) stay in the template, next to the comment that explains them.

    python -m deploy.nginx --node 127.0.0.1:8101 --node 127.0.0.1:8102 --https-port 8443 \\
        --http-port 8080 --certificate var/cluster/tls/server.pem \\
        --certificate-key var/cluster/tls/server.key --static-root staticfiles \\
        --runtime-dir var/cluster/nginx --out var/cluster/nginx.conf
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx.conf"
# Herald's own default (config/settings.py, HERALD_MAX_REQUEST_BYTES): 4 MiB.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z_]+)\s*\}\}")
_LIST_VALUES = ("NODE_ADDRESS", "LIMIT_EXEMPT_ADDRESS")


@dataclass(frozen=True)
class NginxLayout:
    """The machine-specific values of nginx.conf."""

    nodes: Sequence[str]  # "host:port" of each Herald ASGI process
    certificate: Path
    certificate_key: Path
    static_root: Path
    runtime_dir: Path  # pid file, temporary files
    log_dir: Path  # access.log, error.log
    https_port: int = 443
    http_port: int = 80
    listen_address: str = "127.0.0.1"
    server_names: Sequence[str] = ("localhost",)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Addresses or CIDR ranges that the per-address rate and connection limits do not count.
    limit_exempt: Sequence[str] = field(default_factory=tuple)

    def values(self) -> dict[str, str | list[str]]:
        if not self.nodes:
            raise ValueError("nginx needs at least one Herald node in its upstream")
        return {
            "NODE_ADDRESS": list(self.nodes),
            "LIMIT_EXEMPT_ADDRESS": list(self.limit_exempt),
            "TLS_CERTIFICATE": str(Path(self.certificate).resolve()),
            "TLS_CERTIFICATE_KEY": str(Path(self.certificate_key).resolve()),
            "STATIC_ROOT": str(Path(self.static_root).resolve()),
            "RUNTIME_DIR": str(Path(self.runtime_dir).resolve()),
            "LOG_DIR": str(Path(self.log_dir).resolve()),
            "HTTPS_PORT": str(self.https_port),
            "HTTP_PORT": str(self.http_port),
            # The redirect target names the port only when it is not HTTPS's default.
            "HTTPS_PORT_SUFFIX": "" if self.https_port == 443 else f":{self.https_port}",
            "LISTEN_ADDRESS": self.listen_address if ":" not in self.listen_address else f"[{self.listen_address}]",
            "SERVER_NAMES": " ".join(self.server_names),
            "MAX_REQUEST_BYTES": str(self.max_request_bytes),
        }


def render(layout: NginxLayout, template: str | None = None) -> str:
    """The template with every placeholder filled; raises ValueError on an unknown or missing one."""
    text = TEMPLATE.read_text() if template is None else template
    values = layout.values()
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # comments may name placeholders; they stay as written
            lines.append(line)
            continue
        names = _PLACEHOLDER.findall(line)
        unknown = [name for name in names if name not in values]
        if unknown:
            raise ValueError(f"nginx.conf uses unknown placeholder(s): {', '.join(unknown)}")
        list_names = [name for name in names if name in _LIST_VALUES]
        if len(list_names) > 1:
            raise ValueError(f"a template line may hold one list value, not {list_names}: {line.strip()}")
        if list_names:
            for item in values[list_names[0]]:
                lines.append(_fill(line, values, item))
        else:
            lines.append(_fill(line, values, None))
    return "\n".join(lines) + "\n"


def _fill(line: str, values: dict[str, str | list[str]], item: str | None) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        if isinstance(value, list):
            assert item is not None
            return item
        return value

    return _PLACEHOLDER.sub(replace, line)


def write(layout: NginxLayout, path: Path) -> Path:
    """Render into `path` and create the directories nginx writes to."""
    for directory in (layout.runtime_dir, layout.log_dir):
        Path(directory).mkdir(parents=True, exist_ok=True)
        # nginx's workers (not root) write temporary files below the runtime directory.
        os.chmod(directory, 0o755)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(layout))
    return path


def find_nginx() -> str | None:
    """The nginx binary (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def command(nginx: str, conf: Path, prefix: Path, *extra: str) -> list[str]:
    """nginx with its prefix, config and startup error log under our own directories."""
    # -e: before reading the config nginx would otherwise open its compiled-in error log.
    return [
        nginx,
        "-p",
        f"{prefix.resolve()}/",
        "-c",
        str(conf.resolve()),
        "-e",
        str(prefix.resolve() / "error.log"),
        *extra,
    ]


def check(nginx: str, conf: Path, prefix: Path) -> None:
    """`nginx -t`: raise with nginx's own message if the rendered config is not valid."""
    result = subprocess.run(command(nginx, conf, prefix, "-t", "-q"), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"nginx rejected {conf}:\n{result.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render nginx.conf for this machine.")
    parser.add_argument("--node", action="append", required=True, help="host:port of a Herald node (repeat)")
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--listen-address", default="127.0.0.1")
    parser.add_argument("--server-name", action="append", help="server_name (repeat; default localhost)")
    parser.add_argument("--certificate", type=Path, required=True)
    parser.add_argument("--certificate-key", type=Path, required=True)
    parser.add_argument("--static-root", type=Path, required=True)
    parser.add_argument("--runtime-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, help="default: the runtime directory")
    parser.add_argument("--limit-exempt", action="append", default=[], help="address or CIDR (repeat)")
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=int(os.environ.get("HERALD_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)),
        help="default: HERALD_MAX_REQUEST_BYTES or 4 MiB",
    )
    parser.add_argument("--out", type=Path, help="default: print to stdout")
    args = parser.parse_args(argv)
    layout = NginxLayout(
        nodes=args.node,
        https_port=args.https_port,
        http_port=args.http_port,
        listen_address=args.listen_address,
        server_names=args.server_name or ("localhost",),
        certificate=args.certificate,
        certificate_key=args.certificate_key,
        static_root=args.static_root,
        runtime_dir=args.runtime_dir,
        log_dir=args.log_dir or args.runtime_dir,
        limit_exempt=args.limit_exempt,
        max_request_bytes=args.max_request_bytes,
    )
    if args.out:
        write(layout, args.out)
    else:
        print(render(layout), end="")


if __name__ == "__main__":
    main()
