"""Start `vifi serve`: every flag checked before the model loads, then uvicorn in this process."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from vifi.errors import InputError, VifiError

LOOPBACK_NAMES = ("localhost",)


def is_local(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_settings(host: str, port: int, token: str | None, max_upload_mb: float) -> None:
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: use 1-65535")
    if max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb {max_upload_mb}: must be positive")
    if token is not None and len(token) < 16:
        raise InputError("--token is too short to be a secret: use 16 characters or more (e.g. "
                         "`python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    if not is_local(host) and token is None:
        raise InputError(f"--host {host} lets other machines connect: give --token SECRET (or set VIFI_TOKEN) so "
                         "that only people with it can search and watch your videos")


def require_serve_extra() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise VifiError(f"vifi serve needs FastAPI and uvicorn ({missing[0]} is missing): pip install 'vifi[serve]'")


def serve(index: Path, *, checkpoint: str | None, host: str, port: int, token: str | None, max_upload_mb: float,
          device: str | None) -> None:
    from vifi import console
    from vifi.config import check_cli_values

    check_settings(host, port, token, max_upload_mb)
    check_cli_values(device=device)
    require_serve_extra()
    _check_port_free(host, port)
    from vifi.search.query import Searcher

    searcher = Searcher(index, checkpoint, device)
    import uvicorn

    from vifi.serve.app import create_app

    app = create_app(searcher, token=token, max_upload_bytes=int(max_upload_mb * (1 << 20)))
    shown = f"[{host}]" if ":" in host else host
    console.result(f"serving {index} ({len(app.state.vifi.paths)} videos) at http://{shown}:{port}/"
                   + (" (token required)" if token else "") + "; Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port_free(host: str, port: int) -> None:
    """A port in use is one line before the model loads, not uvicorn's traceback after it."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise InputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); choose another "
                             "--port") from None
