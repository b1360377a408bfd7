"""Adversarial SSE splitting: time to split N MB of short `data:` lines with no blank line.

    python -m bench.sse_splitter            # 1, 4 and 16 MB, read in 64 KiB network reads

Each line is a few bytes; no event ever completes, so every read leaves the whole input
pending. A splitter that rescans the pending event on each read is quadratic here; ours must
grow linearly (the per-MB column stays flat). The event cap is lifted for the measurement, so
the whole input is scanned (in service the cap ends such a stream at 4 MiB).
"""

from __future__ import annotations

import argparse
import time

from arbstr.upstream.sse import SseSplitter

VALID = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'


def run(megabytes: int, read: int = 65536, crlf: bool = False) -> float:
    line = b"data: x\r\n" if crlf else b"data: x\n"
    blob = VALID + line * (megabytes * (1 << 20) // len(line))
    splitter = SseSplitter(max_event_bytes=len(blob) + 1)
    t0 = time.perf_counter()
    for i in range(0, len(blob), read):
        splitter.feed(blob[i : i + read])
    splitter.flush()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--read", type=int, default=65536, help="bytes per network read")
    args = ap.parse_args()
    print("| input | framing | seconds | seconds per MB |")
    print("|---|---|---|---|")
    for crlf in (False, True):
        for size in (int(x) for x in args.sizes.split(",")):
            took = min(run(size, args.read, crlf) for _ in range(3))
            framing = "CRLF" if crlf else "LF"
            print(f"| {size} MB | {framing} | {took:.3f} | {took / size:.4f} |")


if __name__ == "__main__":
    main()
