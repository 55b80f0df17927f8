"""`vifi bench search` on a small store: the record's keys, and recall 1.0 where the store scans exactly."""

import json
import subprocess
import sys

from vifi.search import index_folder


def test_bench_search_reports_its_keys_and_exact_recall_below_the_ann_threshold():
    assert 3000 < index_folder.ANN_MIN_ROWS  # exact scan: the store must find exactly what numpy finds
    proc = subprocess.run([sys.executable, "-m", "vifi", "bench", "search", "--rows", "3000", "--dim", "16",
                           "--queries", "10", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("commit_s_first", "commit_s_last", "query_ms_p50", "query_ms_p95", "recall_at_10", "peak_rss_gib",
                "disk_bytes"):
        assert key in record, key
    assert record["rows"] == 3000 and record["commits"] == 3 and record["recall_at_10"] == 1.0
    assert record["disk_bytes"] > 3000 * 17 * 4  # the vectors are on disk
