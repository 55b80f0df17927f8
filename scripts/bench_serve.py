"""Warm query latency of `vifi serve`: start it on INDEX, send each demo class text (and a free text) N times
over HTTP, print the median and 90th percentile of the wall time per request (docs/search.md, "vifi serve").

    python scripts/bench_serve.py INDEX [--rounds 20] [--port 8799]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "vifi", "serve", args.index, "--port", str(args.port),
                               "--device", "cpu"], env=os.environ)
    try:
        while True:
            try:
                info = json.load(urllib.request.urlopen(base + "/api/info", timeout=1))
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("vifi serve stopped")
                time.sleep(0.1)
        ready = time.perf_counter() - started
        queries = [*info["class_names"], "something moving quickly across the screen"]
        times = []
        for round_ in range(args.rounds + 1):
            for q in queries:
                t0 = time.perf_counter()
                hits = json.load(urllib.request.urlopen(f"{base}/api/search?{urllib.parse.urlencode({'q': q})}"))
                if round_:  # the first round warms up
                    times.append(time.perf_counter() - t0)
                assert hits["hits"]
        times.sort()
        print(f"{info['videos']} videos: ready after {ready:.1f} s; {len(times)} warm queries: median "
              f"{1000 * statistics.median(times):.1f} ms, p90 {1000 * times[int(0.9 * len(times))]:.1f} ms, "
              f"max {1000 * times[-1]:.1f} ms")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
