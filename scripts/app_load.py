"""Load check of a running app (python -m pipelines.app): N predictions at once through Gradio's
Python client, each answer checked against the mesh of its own picture, the server's memory read
before and after (/proc, with --pid), then one more request to show the app still answers.

    python scripts/app_load.py --url http://127.0.0.1:7860/ --pid 12345 picture1.png picture2.png ...

Prints the first and warm latencies (a request alone, client round trip and the server's own
seconds) and the concurrent batch's; exit status 1 when an answer is missing or wrong.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def rss_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of a process, in MiB (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def predict(client: Any, picture: str | os.PathLike) -> tuple[tuple[Any, ...], float]:
    """One ``/predict`` call: (the six outputs: mesh, figure, glb, obj, ply, summary; round-trip seconds)."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    result = client.predict(handle_file(str(picture)), api_name="/predict")
    return tuple(result), time.perf_counter() - t0


def fire(url: str, pictures: Sequence[str | os.PathLike], n: int = 16, pid: int | None = None,
         warm: int = 3) -> dict[str, Any]:
    """The load check (see the module docstring); picture ``i % len(pictures)`` for request ``i``.

    Returns:
        ``first_s``, ``warm_s`` (median of ``warm`` lone requests), ``server_first_s``, ``server_warm_s``
        (the app's own timing), ``batch_s`` (all ``n`` at once), ``answers`` [(picture, outputs)],
        ``after`` (outputs of the request after the batch), ``memory`` {before, after} (with ``pid``).
    """
    from gradio_client import Client

    client = Client(url, verbose=False)
    memory = {"start": rss_mb(pid)} if pid else {}
    first, t_first = predict(client, pictures[0])
    lone = [predict(client, pictures[0]) for _ in range(warm)]
    if pid:
        memory["before"] = rss_mb(pid)
    clients = [Client(url, verbose=False) for _ in range(n)]  # one per thread: n requests at the server at once
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        jobs = [pool.submit(predict, clients[i], pictures[i % len(pictures)]) for i in range(n)]
        answers = [(pictures[i % len(pictures)], job.result()[0]) for i, job in enumerate(jobs)]
    batch = time.perf_counter() - t0
    if pid:
        memory["after"] = rss_mb(pid)
    after, _ = predict(client, pictures[-1])
    return {"first_s": t_first, "warm_s": statistics.median(t for _, t in lone),
            "server_first_s": _seconds(first[5]), "server_warm_s": statistics.median(_seconds(r[5]) for r, _ in lone),
            "batch_s": batch, "answers": answers, "after": after, "memory": memory}


def _seconds(summary: str) -> float:
    """The server's own seconds at the end of an answer's summary (``... 0.31 s.``)."""
    return float(summary.rstrip(". s").rsplit(" ", 1)[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pictures", nargs="+")
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--pid", type=int, default=None, help="the server's process id (memory from /proc)")
    p.add_argument("-n", type=int, default=16, help="concurrent requests (default: %(default)s)")
    args = p.parse_args(argv)
    r = fire(args.url, args.pictures, args.n, args.pid)
    bad = [pic for pic, out in r["answers"] if not out[2] or not Path(out[2]).is_file()]
    print(f"first request {r['first_s']:.2f} s (server {r['server_first_s']:.2f} s); warm {r['warm_s']:.2f} s "
          f"(server {r['server_warm_s']:.2f} s); {args.n} at once: {r['batch_s']:.2f} s "
          f"({r['batch_s'] / args.n:.2f} s each), {args.n - len(bad)}/{args.n} answered")
    for k, v in r["memory"].items():
        print(f"server memory {k}: RSS {v['VmRSS']:.0f} MiB, peak {v['VmHWM']:.0f} MiB")
    return 1 if bad or not r["after"][2] else 0


if __name__ == "__main__":
    sys.exit(main())
