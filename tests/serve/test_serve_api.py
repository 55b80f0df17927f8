"""`vifi serve`'s JSON API with FastAPI's TestClient: the same hits as the Searcher and `vifi search`, the same rows
as `vifi zeroshot`, videos with Range requests, thumbnails of the frame at a time; and its security rules: only
indexed files, no path from a request, upload limits, the token, each refused with its status and nothing written."""

import csv
import io
import os

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import vifi_cli

from starlette.testclient import TestClient  # noqa: E402  (after conftest's importorskip)

from vifi.serve.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1:8765"
TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def upload_dir(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def client(searcher, upload_dir):
    with TestClient(create_app(searcher, upload_dir=upload_dir, max_upload_bytes=1 << 20), base_url=LOCAL) as c:
        yield c


def test_search_gives_the_searchers_hits_and_the_clis_ranking(client, searcher, tiny_index):
    index, _, videos = tiny_index
    body = client.get("/api/search", params={"q": "a red circle sliding across", "k": 5}).json()
    expected = searcher.search(["a red circle sliding across"], top_k=5)
    assert [h["path"] for h in body["hits"]] == list(expected.path)
    assert [h["score"] for h in body["hits"]] == list(expected.score)
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
    paths = client.app.state.vifi.paths
    for hit in body["hits"]:
        assert paths[hit["id"]] == hit["path"] and hit["video_url"] == f"/api/videos/{hit['id']}"
        assert hit["start"] is None and hit["thumb_url"] == f"/api/thumbs/{hit['id']}?t=0"
    cli = vifi_cli("search", "a red circle sliding across", "--index", index, "--top-k", "5", "--out", "-").stdout
    assert [r["path"] for r in csv.DictReader(io.StringIO(cli))] == [h["path"] for h in body["hits"]]
    raw = client.get("/api/search", params={"q": "a red circle", "k": 3, "raw": 1, "cosine": 1}).json()
    assert [h["path"] for h in raw["hits"]] == list(searcher.search(["a red circle"], 3, False, True).path)


def test_classify_an_indexed_video_or_an_upload_gives_vifi_zeroshots_rows(client, tiny_index, upload_dir):
    index, checkpoint, videos = tiny_index
    ids = {p: i for i, p in enumerate(client.app.state.vifi.paths)}
    video = videos[4]
    labels = "a red circle sliding across,a blue square spinning,a green triangle pulsing"
    cli = vifi_cli("zeroshot", video.resolve(), "--labels", labels, "--checkpoint", checkpoint, "--device", "cpu",
                   "--out", "-").stdout
    expected = [{**r, "prob": float(r["prob"])} for r in csv.DictReader(io.StringIO(cli))]
    by_id = client.post("/api/classify", params={"labels": labels, "id": ids[str(video.resolve())]})
    assert by_id.status_code == 200 and by_id.json() == expected
    uploaded = client.post("/api/classify", params={"labels": labels, "name": "my clip.mp4"},
                           content=video.read_bytes())
    assert uploaded.status_code == 200
    assert uploaded.json() == [{**r, "video": "my clip.mp4"} for r in expected]
    assert list(upload_dir.iterdir()) == []  # the upload is deleted after use


def test_videos_are_served_with_range_requests(client, tiny_index):
    paths = client.app.state.vifi.paths
    data = open(paths[2], "rb").read()
    whole = client.get("/api/videos/2")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = client.get("/api/videos/2", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get("/api/videos/2", headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]


def test_thumbnail_is_the_frame_at_the_time(client, tiny_index):
    from vifi.data.decoding import read_frames
    from vifi.data.demo import FPS

    path = client.app.state.vifi.paths[0]
    frames, _ = read_frames(path, lambda n: np.arange(n))
    for t in (0.0, 2.0):
        response = client.get("/api/thumbs/0", params={"t": t})
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        shown = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(float)
        assert shown.shape == frames[0].shape
        errors = [np.abs(shown - f).mean() for f in frames]
        assert int(np.argmin(errors)) == round(t * FPS)  # of all frames, the one at t is the closest
    assert (0, 2.0) in client.app.state.vifi.thumbs  # cached
    again = client.get("/api/thumbs/0", params={"t": 2})
    assert again.content == client.app.state.vifi.thumbs[(0, 2.0)]


def test_page_and_info(client, searcher):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "<video" in page.text
    info = client.get("/api/info").json()
    assert info["videos"] == len(searcher.paths()) and info["frames"] == 4


TRAVERSALS = ["../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "%2e%2e/%2e%2e/etc/passwd",
              "0/../../../etc/passwd", "-1", "1e3", "0x1"]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_no_path_from_a_request_reaches_the_filesystem(client, bad, upload_dir):
    for url in (f"/api/videos/{bad}", f"/api/thumbs/{bad}"):
        response = client.get(url)
        assert response.status_code in (404, 422), url
        assert b"root:" not in response.content
    assert client.get("/api/thumbs/0", params={"t": bad}).status_code == (200 if bad == "1e3" else 422)
    assert client.post("/api/classify", params={"labels": "a,b", "id": bad}).status_code in (404, 422)
    response = client.post("/api/classify", params={"labels": "a,b", "name": bad + ".mp4"}, content=b"x" * 100)
    assert response.status_code == 415  # stored under a random name, then not decodable
    assert list(upload_dir.iterdir()) == []


def test_only_indexed_files_are_served(client, tiny_index, demo_data):
    n = len(client.app.state.vifi.paths)
    for bad in (n, n + 1, 10**9):
        assert client.get(f"/api/videos/{bad}").status_code == 404
        assert client.get(f"/api/thumbs/{bad}").status_code == 404
        assert client.post("/api/classify", params={"labels": "a,b", "id": bad}).status_code == 404
    served = {client.get(f"/api/videos/{i}").content for i in range(n)}
    assert len(served) == n  # every id is one indexed file, and only those
    assert client.get("/api/videos/0", params={"path": "/etc/passwd"}).content == open(
        client.app.state.vifi.paths[0], "rb").read()


def test_upload_limit_and_non_videos_are_refused_with_nothing_kept(searcher, tiny_index, upload_dir):
    video = tiny_index[2][0]
    app = create_app(searcher, upload_dir=upload_dir, max_upload_bytes=1000)
    with TestClient(app, base_url=LOCAL) as client:
        big = client.post("/api/classify", params={"labels": "a,b"}, content=video.read_bytes())
        assert big.status_code == 413 and "1000 bytes" in big.json()["error"]
        streamed = client.post("/api/classify", params={"labels": "a,b"},
                               content=iter([b"\0" * 600, b"\0" * 600]))  # no Content-Length: counted while read
        assert streamed.status_code == 413
        text = client.post("/api/classify", params={"labels": "a,b", "name": "notes.txt"}, content=b"hello")
        assert text.status_code == 415 and "not a video file name" in text.json()["error"]
        garbage = client.post("/api/classify", params={"labels": "a,b", "name": "x.mp4"}, content=b"\1" * 900)
        assert garbage.status_code == 415 and "cannot decode" in garbage.json()["error"]
        empty = client.post("/api/classify", params={"labels": "a,b"})
        assert empty.status_code == 400
        dupes = client.post("/api/classify", params={"labels": "a,a"}, content=b"\1" * 10)
        assert dupes.status_code == 400 and "more than once" in dupes.json()["error"]
        assert client.get("/api/search", params={"q": "  "}).status_code == 400
        assert client.get("/api/search", params={"q": "x", "k": 0}).status_code == 422
    assert list(upload_dir.iterdir()) == []


def test_token_is_required_on_every_request(searcher, upload_dir):
    app = create_app(searcher, token=TOKEN, upload_dir=upload_dir)
    with TestClient(app, base_url="http://192.0.2.7:8765") as client:
        for url in ("/", "/api/search?q=x", "/api/videos/0", "/api/thumbs/0", "/api/info"):
            assert client.get(url).status_code == 401, url
            assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403, url
            assert client.get(url, params={"token": TOKEN[:-1]}).status_code == 403, url
        assert client.post("/api/classify?labels=a,b", content=b"\0" * 10).status_code == 401
        assert list(upload_dir.iterdir()) == []
        ok = client.get("/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        page = client.get("/", params={"token": TOKEN})  # the page's own <img>/<video> requests use the cookie
        assert page.status_code == 200 and "httponly" in page.headers["set-cookie"].lower()
        assert client.get("/api/videos/0").status_code == 200


def test_without_a_token_only_local_host_names_are_answered(searcher, upload_dir):
    app = create_app(searcher, upload_dir=upload_dir)
    for host, status in (("127.0.0.1:8765", 200), ("localhost:8765", 200), ("[::1]:8765", 200),
                         ("evil.example:8765", 400), ("192.0.2.7", 400)):
        with TestClient(app, base_url=f"http://{host}") as client:
            assert client.get("/api/info").status_code == status, host


def test_cli_refuses_a_non_local_bind_without_a_token_before_loading(tiny_index, tmp_path):
    index = tiny_index[0]
    env = {k: v for k, v in os.environ.items() if k != "VIFI_TOKEN"}
    proc = vifi_cli("serve", index, "--host", "0.0.0.0", check=False, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0 lets other machines connect: give --token SECRET (or set VIFI_TOKEN) so that only "
        "people with it can search and watch your videos"]
    short = vifi_cli("serve", index, "--host", "0.0.0.0", "--token", "abc", check=False)
    assert short.returncode == 2 and "too short" in short.stderr
    from vifi.serve.launch import is_local

    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost") and is_local("127.1.2.3")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.2") and not is_local("example.com")


def test_vifi_serve_process_answers_and_a_busy_port_is_one_line(tiny_index):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    index = tiny_index[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = vifi_cli("serve", index, "--port", busy.getsockname()[1], check=False)
        assert taken.returncode == 2 and taken.stderr.strip().count("\n") == 0
        assert "cannot listen there" in taken.stderr
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
    server = subprocess.Popen([sys.executable, "-m", "vifi", "serve", str(index), "--port", str(port), "--device",
                               "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2))
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert info["videos"] == len(tiny_index[2])
        hits = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/search?q=a+red+circle&k=3"))
        assert len(hits["hits"]) == 3
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=20)
    assert f"({len(tiny_index[2])} videos) at http://127.0.0.1:{port}/" in out
