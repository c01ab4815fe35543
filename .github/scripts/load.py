"""A short load test: N concurrent clients for a few seconds; fails on any error or a slow p95."""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Optional


def worker(url: str, until: float, latencies: list[float], errors: list[str], lock: threading.Lock) -> None:
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
                ok = 200 <= response.status < 300
                problem = "" if ok else f"status {response.status}"
        except (urllib.error.URLError, OSError) as error:
            problem = str(error)
        elapsed = time.monotonic() - start
        with lock:
            if problem:
                errors.append(problem)
            else:
                latencies.append(elapsed)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-p95-ms", type=float, default=1500)
    args = parser.parse_args(argv)

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    until = time.monotonic() + args.seconds
    threads = [threading.Thread(target=worker, args=(args.url, until, latencies, errors, lock))
               for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = len(latencies) + len(errors)
    p50, p95, p99 = (percentile(latencies, f) * 1000 for f in (0.50, 0.95, 0.99))
    print(f"| requests | errors | req/s | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|\n"
          f"| {total} | {len(errors)} | {total / args.seconds:.1f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |")
    if errors:
        print(f"FAIL {len(errors)} failed request(s), first: {errors[0]}; most common: "
              f"{statistics.mode(errors)}")
    if not latencies or p95 > args.max_p95_ms:
        print(f"FAIL p95 {p95:.0f} ms is above {args.max_p95_ms:.0f} ms")
    return 1 if errors or not latencies or p95 > args.max_p95_ms else 0


if __name__ == "__main__":
    sys.exit(main())
