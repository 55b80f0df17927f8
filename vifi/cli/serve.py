"""`vifi serve INDEX`: a search page and a JSON API over an index, the model loaded once (docs/search.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vifi.cli.options import cache_dir_option, device_option


def serve_command(
    index: Path = typer.Argument(..., help="index folder made by `vifi index`"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="where the index's checkpoint is now, if "
                                                                       "it moved (its sha256 must match)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; anything but this machine's "
                                                         "loopback needs --token"),
    port: int = typer.Option(8765, "--port", help="TCP port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="VIFI_TOKEN", show_envvar=True,
                                        help="secret every request must carry (Authorization: Bearer, or open "
                                             "/?token=… once); prefer the VIFI_TOKEN variable, which `ps` does "
                                             "not show"),
    max_upload_mb: float = typer.Option(200, "--max-upload-mb", help="largest video POST /api/classify takes"),
    device: Optional[str] = device_option(),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi.serve.launch import serve

    serve(index, checkpoint=checkpoint, host=host, port=port, token=token, max_upload_mb=max_upload_mb,
          device=device)


def register(app: typer.Typer) -> None:
    app.command("serve", help="Search an index from a web page and a JSON API, the model kept loaded "
                              "(pip install 'vifi[serve]')."
                              "\n\nExample: vifi serve runs/demo.index   # then open http://127.0.0.1:8765/")(
        serve_command)
