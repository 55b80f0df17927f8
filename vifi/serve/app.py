"""The `vifi serve` web app: one process keeps the model and the index loaded (vifi.search.query.Searcher) and
answers searches, classifications, thumbnails and video playback (docs/search.md, "vifi serve").

Security rules (docs/search.md):
- only indexed files are served: the request names a video by its number in the index's sorted path list, never by
  a path, so no text from a request reaches the filesystem;
- uploads stream into a private temporary folder, are refused past `max_upload_bytes` (Content-Length first, then
  while reading), and are deleted after use, also on failure;
- with a token, every request must carry it (Authorization: Bearer, a `token` query parameter, or the cookie the
  page sets); without one the app answers only Host headers naming this machine (no DNS rebinding to localhost).
"""

from __future__ import annotations

import hmac
import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from vifi.errors import InputError, VideoError, VifiError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
COOKIE = "vifi_token"
MAX_K = 100
THUMB_WIDTH = 320
THUMB_CACHE = 512  # thumbnails kept in memory (a few KB each)
CHUNK = 1 << 20


class ServeState:
    """What the handlers share: the searcher, the id ↔ path table, the thumbnail cache, one lock for the model."""

    def __init__(self, searcher, *, token: str | None, max_upload_bytes: int, upload_dir: Path):
        self.searcher = searcher
        self.paths = sorted(searcher.paths())  # id = position: the only way a request names a file
        self.ids = {p: i for i, p in enumerate(self.paths)}
        self.ids_lock = threading.Lock()
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        self.upload_dir = upload_dir
        self.model_lock = threading.Lock()  # handlers run in a thread pool; one forward at a time
        self.thumbs: OrderedDict[tuple[int, float], bytes] = OrderedDict()
        self.thumbs_lock = threading.Lock()

    def id_of(self, path: str) -> int:
        """A hit's id. A path the table lacks came from a newer version of the store (a `vifi index` run while
        serving, read after its clean-up): it is indexed, so it gets the next id rather than failing the request."""
        with self.ids_lock:
            if path not in self.ids:
                self.ids[path] = len(self.paths)
                self.paths.append(path)
            return self.ids[path]

    def path_of(self, video_id: int) -> str:
        if not 0 <= video_id < len(self.paths):
            raise HTTPException(404, f"no video {video_id} in the index (ids 0..{len(self.paths) - 1})")
        path = self.paths[video_id]
        if not os.path.isfile(path):
            raise HTTPException(404, f"video {video_id} is in the index but no longer on disk")
        return path


def create_app(searcher, *, token: str | None = None, max_upload_bytes: int = 200 << 20,
               upload_dir: str | Path | None = None) -> FastAPI:
    """The app over an opened `Searcher`. `upload_dir`: where uploads live while classified (default: a private
    temporary folder made now and removed at shutdown)."""
    own_dir = upload_dir is None
    folder = Path(tempfile.mkdtemp(prefix="vifi-serve-")) if own_dir else Path(upload_dir)
    state = ServeState(searcher, token=token, max_upload_bytes=max_upload_bytes, upload_dir=folder)
    app = FastAPI(title="vifi serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.vifi = state
    if own_dir:
        app.router.on_shutdown.append(lambda: shutil.rmtree(folder, ignore_errors=True))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is None:
            if _host_name(request.headers.get("host") or "") not in LOCAL_HOSTS:
                return JSONResponse({"error": "this server answers only http://127.0.0.1 or http://localhost "
                                              "(start it with --token to serve other hosts)"}, status_code=400)
            return await call_next(request)
        given = _token_of(request)
        if given is None:
            return JSONResponse({"error": "this server needs its token: Authorization: Bearer TOKEN, or open "
                                          "/?token=TOKEN once"}, status_code=401)
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "wrong token"}, status_code=403)
        response = await call_next(request)
        if request.url.path == "/" and request.query_params.get("token"):
            # <img> and <video> cannot send headers: the page's own requests carry the token as a cookie.
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(VifiError)
    async def vifi_error(request: Request, exc: VifiError):
        status = 415 if isinstance(exc, VideoError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse((Path(__file__).parent / "page.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    def info():
        i = searcher.info
        return {"videos": len(state.paths), "checkpoint": str(searcher.weights), "frames": i.get("frames"),
                "template": i.get("template"), "class_names": list(searcher.facts.class_names)}

    @app.get("/api/search")
    def search(q: str = Query(..., max_length=1000), k: int = Query(10, ge=1, le=MAX_K), raw: bool = False,
               cosine: bool = False):
        text = q.strip()
        if not text:
            raise InputError("the query is empty; give the text to search for, e.g. \"a person juggling\"")
        with state.model_lock:
            table = searcher.search([text], top_k=k, use_template=not raw, cosine=cosine)
        return {"query": text, "hits": [_hit(state, row) for row in table.itertuples(index=False)]}

    @app.get("/api/videos/{video_id}")
    def video(video_id: int):
        # FileResponse answers Range requests (206, Content-Range), so browsers can seek.
        return FileResponse(state.path_of(video_id))

    @app.get("/api/thumbs/{video_id}")
    def thumb(video_id: int, t: float = Query(0.0, ge=0, le=1e7)):
        path = state.path_of(video_id)
        key = (video_id, round(t, 2))
        with state.thumbs_lock:
            jpeg = state.thumbs.get(key)
            if jpeg is not None:
                state.thumbs.move_to_end(key)
        if jpeg is None:
            from vifi.serve.thumbs import thumbnail

            jpeg = thumbnail(path, key[1], THUMB_WIDTH)
            with state.thumbs_lock:
                state.thumbs[key] = jpeg
                while len(state.thumbs) > THUMB_CACHE:
                    state.thumbs.popitem(last=False)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/classify")
    async def classify(request: Request, labels: str = Query(..., max_length=10000), id: int | None = None,
                       name: str = Query("upload.mp4", max_length=255)):
        from vifi.zeroshot import parse_labels

        names = parse_labels(labels, None)
        if id is not None:
            return _classify(state, Path(state.path_of(id)), names, str(state.path_of(id)))
        upload = await _receive_upload(request, state, name)
        try:
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(_classify, state, upload, names, Path(name).name)
        finally:
            upload.unlink(missing_ok=True)

    return app


def _host_name(header: str) -> str:
    """The Host header without its port ("[::1]:8765" -> "[::1]", "localhost:8765" -> "localhost")."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def _token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE)


def _hit(state: ServeState, row) -> dict:
    start = None if _missing(row.start) else float(row.start)
    end = None if _missing(row.end) else float(row.end)
    vid = state.id_of(row.path)
    return {"rank": int(row.rank), "score": float(row.score), "cosine": float(row.cosine), "path": row.path,
            "name": Path(row.path).name, "id": vid, "start": start, "end": end,
            "video_url": f"/api/videos/{vid}", "thumb_url": f"/api/thumbs/{vid}?t={start or 0:g}"}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


async def _receive_upload(request: Request, state: ServeState, name: str) -> Path:
    """The request body in a new file of the private upload folder; 413 past the limit (nothing kept), 415 for a
    name without a video suffix. Only the suffix of `name` is used, never the name itself."""
    from vifi.data.decoding import VIDEO_SUFFIXES

    suffix = Path(name).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise HTTPException(415, f"upload {Path(name).name!r}: not a video file name (one of "
                                 f"{', '.join(VIDEO_SUFFIXES)})")
    limit = state.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {int(declared)} bytes is over the limit of {limit} bytes "
                                 "(--max-upload-mb)")
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=state.upload_dir)
    path, size = Path(tmp), 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"upload is over the limit of {limit} bytes (--max-upload-mb)")
                out.write(chunk)
        if size == 0:
            raise HTTPException(400, "no video: send the file as the request body "
                                     "(curl --data-binary @clip.mp4), or ?id=N for an indexed video")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _classify(state: ServeState, path: Path, names: list[str], shown: str) -> list[dict]:
    """The rows `vifi zeroshot` prints for one video (its checkpoint's frames and template, 1x1 views)."""
    from vifi.model.facts import InferenceInputs
    from vifi.zeroshot import classify

    s = state.searcher
    inputs = InferenceInputs(int(s.info["frames"]), int(s.info["input_size"]), s.info["template"])
    with state.model_lock:
        table = classify([path], names, s.model, inputs, views=(1, 1), device=str(s.runtime.device), batch=1)
    table["video"] = shown
    return table.to_dict(orient="records")
