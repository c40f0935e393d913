"""The nginx proxy in front of Serve (deploy/nginx/nginx.conf), run as a child process.

    python -m serving.proxy --listen 0.0.0.0:8080 --upstream 127.0.0.1:8000   # the container's way

The config file is the one the Docker image and the KubeRay sidecar use; `render` only rewrites
its `listen` and upstream `server` lines (and, for tests, named directives), so what is tested
is what is deployed. nginx runs as any user: everything it writes goes under the prefix dir.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "deploy" / "nginx" / "nginx.conf"
LISTEN_LINE = "listen 8080;"
UPSTREAM_LINE = "server 127.0.0.1:8000;"


def nginx_binary() -> Optional[str]:
    """Debian installs nginx in /usr/sbin, which is not on a non-root user's PATH."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def render(listen: str, upstream: str, directives: Optional[dict] = None, conf: Path = CONF) -> str:
    """The config with `listen <listen>;` and the upstream `server <upstream>;`; `directives`
    ({"client_body_timeout": "2s"}) replace the value of directives the file sets once."""
    text = conf.read_text()
    changes = {LISTEN_LINE: f"listen {listen};", UPSTREAM_LINE: f"server {upstream};"}
    for name, value in (directives or {}).items():
        found = re.findall(rf"^\s*{re.escape(name)} [^;]*;", text, flags=re.M)
        if len(found) != 1:
            raise ValueError(f"{conf}: directive {name!r} is set {len(found)} times; can only replace one")
        changes[found[0].strip()] = f"{name} {value};"
    for old, new in changes.items():
        if text.count(old) != 1:
            raise ValueError(f"{conf}: expected exactly one {old!r}")
        text = text.replace(old, new)
    return text


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proxy:
    """nginx listening on `listen` (host:port) in front of Serve at `upstream` (host:port)."""

    def __init__(self, listen: str, upstream: str, directives: Optional[dict] = None,
                 prefix: Optional[str] = None):
        self.listen, self.upstream = listen, upstream
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="layoutray-nginx-"))
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(render(listen, upstream, directives))
        self.proc: Optional[subprocess.Popen] = None

    def command(self) -> list[str]:
        binary = nginx_binary()
        if not binary:
            raise FileNotFoundError("nginx is not installed (scripts/install.sh installs Debian's nginx)")
        return [binary, "-e", "stderr", "-p", f"{self.prefix}/", "-c", str(self.conf), "-g", "daemon off;"]

    def start(self, timeout_s: float = 20.0) -> "Proxy":
        with open(self.prefix / "error.log", "wb") as log:  # nginx keeps its own descriptor
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=log)
        host, port = self.listen.rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while not _port_open(host, int(port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {(self.prefix / 'error.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Proxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Run nginx (deploy/nginx/nginx.conf) in the foreground.")
    ap.add_argument("--listen", default="8080", help="nginx `listen` value: PORT or HOST:PORT")
    ap.add_argument("--upstream", default="127.0.0.1:8000", help="Serve's HTTP proxy, HOST:PORT")
    ap.add_argument("--prefix", default=None, help="writable dir for the rendered config, pid and temp files")
    args = ap.parse_args(argv)
    prefix = args.prefix or tempfile.mkdtemp(prefix="layoutray-nginx-")
    os.makedirs(prefix, exist_ok=True)
    proxy = Proxy(args.listen, args.upstream, prefix=prefix)
    cmd = proxy.command()
    os.execv(cmd[0], cmd)  # nginx replaces this process: signals and exit status are its own
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
