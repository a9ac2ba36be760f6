"""Upload inspection throughput on a 10 MB multipart body, beside a plain pass-through.

Baseline: hand the same 64 KiB chunks to a sink that only counts them (what a proxy does with a
body it does not inspect, minus the socket); for scale, also the cost of assembling the body in
memory, which mitmproxy does by default. Measured: `UploadInspector` fed those chunks, with
(a) files and size only, (b) two markers and a fingerprint list, the full inspection. The body is
one text field plus a 10 MB binary file, encoded as a browser would.

Then the marker scan of a 10 MiB text body (`inspect_body`, as the proxy runs it on a held body),
with the two shipped markers, beside the same inspection without markers: a body of hex digits
(most chunks lack a byte every match needs, so the prefilter skips them) and one of prose (every
chunk is searched in full). Figures on a shared 2-core machine are noisy: the median CPU time of
several runs is printed.
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import sys
import time
from collections.abc import Callable

from socialguard.engine.uploads import Marker, UploadInspector, UploadRules, inspect_body

CHUNK = 64 * 1024
FILE_BYTES = 10 * 1024 * 1024
RUNS = 7
BOUNDARY = "----socialguardbench7MA4YWxkTrZu0gW"
SHIPPED_MARKERS = (
    Marker("confidential", re.compile(rb"CONFIDENTIAL", re.IGNORECASE)),
    Marker("student-id", re.compile(rb"\bS\d{7}\b")),
)
PROSE = (
    b"Dear families, the Spring Concert moved to Room 214 on May 3rd at 6:30 PM. Students "
    b"should arrive by 6:00; Seniors collect caps and gowns Monday-Friday (Office 12B). "
    b"Questions? Call Ms. Sanchez at 555-0142 or see https://schools.example/news?id=4412. "
)


def body_chunks() -> list[bytes]:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="caption"\r\n\r\n'
        "Our team at the regional final\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="photo"; filename="team.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + os.urandom(FILE_BYTES) + f"\r\n--{BOUNDARY}--\r\n".encode()
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]


def pass_through(chunks: list[bytes]) -> None:
    total = 0
    for chunk in chunks:
        total += len(chunk)
    assert total > FILE_BYTES


def buffer_body(chunks: list[bytes]) -> None:
    """What mitmproxy does with a request body by default: assemble it in memory."""
    assert len(b"".join(chunks)) > FILE_BYTES


def inspected(rules: UploadRules) -> Callable[[list[bytes]], None]:
    def run(chunks: list[bytes]) -> None:
        inspector = UploadInspector(rules, f"multipart/form-data; boundary={BOUNDARY}")
        for chunk in chunks:
            inspector.feed(chunk)
        report = inspector.finish()
        assert report.files and report.files[0].size == FILE_BYTES

    return run


def median_seconds(fn: Callable[[list[bytes]], None], chunks: list[bytes]) -> float:
    """Median CPU seconds of RUNS runs: CPU time suffers less from other loads on the box."""
    times = []
    for _ in range(RUNS):
        start = time.process_time()
        fn(chunks)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    chunks = body_chunks()
    size_mb = sum(map(len, chunks)) / 1e6
    files_only = UploadRules(max_body=FILE_BYTES)
    full = UploadRules(
        max_body=FILE_BYTES,
        markers=(
            Marker("confidential", re.compile(rb"CONFIDENTIAL", re.IGNORECASE)),
            Marker("student-id", re.compile(rb"\bS\d{7}\b")),
        ),
        fingerprints={hashlib.sha256(str(i).encode()).hexdigest(): f"f{i}" for i in range(1000)},
    )
    base = median_seconds(pass_through, chunks)
    joined = median_seconds(buffer_body, chunks)
    kib = CHUNK // 1024
    print(f"body: {size_mb:.1f} MB in {len(chunks)} chunks of {kib} KiB, median of {RUNS} runs")
    print(f"{'pass-through (baseline)':38} {base * 1e3:8.2f} ms")
    print(f"{'buffering the body (for scale)':38} {joined * 1e3:8.2f} ms")
    configs = [("inspect: files and size", files_only), ("inspect: + markers, fingerprints", full)]
    for name, rules in configs:
        t = median_seconds(inspected(rules), chunks)
        print(
            f"{name:38} {t * 1e3:8.2f} ms  {size_mb / t:7.0f} MB/s  "
            f"ratio {t / base:6.1f}x  adds {(t - base) * 1e3:6.2f} ms per 10 MB"
        )
    text_bodies(base_rules=files_only)
    return 0


def text_bodies(base_rules: UploadRules) -> None:
    """The marker scan of a 10 MiB text body, beside the same inspection without markers."""
    size = FILE_BYTES
    bodies = {
        "hex digits": os.urandom(size // 2).hex().encode(),
        "prose": (PROSE * (size // len(PROSE) + 1))[:size],
    }
    marked = UploadRules(max_body=base_rules.max_body, markers=SHIPPED_MARKERS)
    print(f"text body of {size / 1e6:.1f} MB, inspect_body in 64 KiB chunks, median of {RUNS} runs")
    for name, body in bodies.items():

        def run(rules: UploadRules, body: bytes = body) -> Callable[[list[bytes]], None]:
            def one(_: list[bytes]) -> None:
                report = inspect_body(rules, "application/x-www-form-urlencoded", body)
                assert report.markers == () and report.size == len(body)

            return one

        base = median_seconds(run(base_rules), [])
        t = median_seconds(run(marked), [])
        print(
            f"  {name:12} no markers {base * 1e3:6.2f} ms  shipped markers {t * 1e3:6.2f} ms  "
            f"the scan adds {(t - base) * 1e3:6.2f} ms ({(t - base) / size * 1e9:.2f} ns/byte)"
        )


if __name__ == "__main__":
    sys.exit(main())
