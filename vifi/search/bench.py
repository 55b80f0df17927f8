"""`vifi bench search --rows N --dim D`: the store's costs at scale, through the same code `vifi index`/`search` use.

Synthetic rows stand in for video embeddings: unit vectors around 1,000 cluster centres (cosine to the centre about
0.8, as embeddings of one kind of video are), offsets like the class-bank correction's. A build appends them in
commits of `commit_rows` (as `vifi index` does every --commit-every videos), then optimises (the ANN index); the
queries (noisy copies of random rows) then run in a fresh process, so its peak RSS is a search's, not the build's.
Recall@10 is measured against an exact inner-product scan of the same rows (regenerated chunk by chunk).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vifi.search.index_folder import IndexEntry, IndexFolder

SCALE = 100.0  # a CLIP logit scale


CHUNK = 1000  # rows are generated (and committed) 1,000 at a time, so any row can be regenerated alone


@functools.lru_cache(maxsize=2)
def _centres(seed: int, dim: int) -> np.ndarray:
    centres = np.random.default_rng(seed).standard_normal((1000, dim)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def _rows(seed: int, start: int, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, start])
    centres = _centres(seed, dim)
    x = centres[rng.integers(0, 1000, n)] + (0.75 / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    offsets = (20 + rng.standard_normal(n)).astype(np.float32)
    return x, offsets


def build(folder: Path, rows: int, dim: int, seed: int = 0) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    store = IndexFolder(folder)
    info = {"table": IndexFolder.new_table_name(), "window": None}
    store.write_info(info)
    commits = []
    started = time.perf_counter()
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        x, off = _rows(seed, start, n, dim)
        entries = [IndexEntry(f"/bench/{start + i:08d}.mp4", 1000 + i, start + i) for i in range(n)]
        t = time.perf_counter()
        store.commit(info, entries, x, off, SCALE)
        commits.append(time.perf_counter() - t)
    t = time.perf_counter()
    store.optimize()
    optimise = time.perf_counter() - t
    # The first commit creates the table: the first and last full-size appends are compared (median of 3 each);
    # commit_s_max is a commit that also compacted (every COMPACT_EVERY appends).
    first = commits[1:4] if len(commits) > 3 else commits
    return {"commit_s_first": round(float(np.median(first)), 4),
            "commit_s_last": round(float(np.median(commits[-3:])), 4), "commit_s_max": round(max(commits), 2),
            "commits": len(commits), "build_s": round(time.perf_counter() - started, 1),
            "optimize_s": round(optimise, 1)}


def query_process(folder: Path, rows: int, dim: int, queries: int, seed: int = 0) -> dict:
    """Runs in its own process (see module docstring): latency, recall@10, peak RSS of searching."""
    store = IndexFolder(folder)
    store.table()
    rng = np.random.default_rng([seed, 7])
    picks = rng.integers(0, rows, queries)
    qs = []
    for p in picks:
        start = int(p) - int(p) % CHUNK
        x, _ = _rows(seed, start, min(CHUNK, rows - start), dim)
        q = x[int(p) - start] + (0.5 / np.sqrt(dim)) * rng.standard_normal(dim).astype(np.float32)
        qs.append(np.append(q / np.linalg.norm(q), 1.0).astype(np.float32))
    store.search(qs[0], 10)  # warm: the table and index opened, caches filled once
    latencies, found = [], []
    for q in qs:
        t = time.perf_counter()
        result = store.search(q, 10)
        latencies.append(time.perf_counter() - t)
        found.append(set(result["path"].to_pylist()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    exact = _exact_top10(np.stack(qs), rows, dim, seed)
    recall = float(np.mean([len(f & e) / 10 for f, e in zip(found, exact)]))
    return {"query_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 2),
            "query_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 2),
            "recall_at_10": round(recall, 4), "peak_rss_gib": round(rss, 3)}


def _exact_top10(qs: np.ndarray, rows: int, dim: int, seed: int) -> list[set[str]]:
    best = np.full((len(qs), 10), -np.inf, np.float32)
    ids = np.zeros((len(qs), 10), np.int64)
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        x, off = _rows(seed, start, n, dim)
        dots = qs[:, :-1] @ x.T - off[None, :] / SCALE
        both = np.concatenate([best, dots], axis=1)
        both_ids = np.concatenate([ids, np.broadcast_to(np.arange(start, start + n), (len(qs), n))], axis=1)
        top = np.argpartition(-both, 9, axis=1)[:, :10]
        best, ids = np.take_along_axis(both, top, 1), np.take_along_axis(both_ids, top, 1)
    return [{f"/bench/{i:08d}.mp4" for i in row} for row in ids]


def disk_bytes(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def run(folder: Path, rows: int, dim: int, queries: int = 100, keep: bool = False) -> dict:
    record = {"rows": rows, "dim": dim, "commit_rows": CHUNK, "queries": queries, "store": "lancedb"}
    record.update(build(folder, rows, dim))
    record["disk_bytes"] = disk_bytes(folder)
    code = ("import json, sys; from pathlib import Path; from vifi.search.bench import query_process; "
            f"print(json.dumps(query_process(Path(sys.argv[1]), {rows}, {dim}, {queries})))")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                          env={**os.environ, "LANCE_LOG": "error"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "query process failed")
    record.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return record
