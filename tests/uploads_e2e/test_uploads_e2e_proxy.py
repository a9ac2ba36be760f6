"""Issue 7 through the real proxy (mitmproxy + addon on loopback, real curl, recording upstreams):
sign-in restriction headers, the personal-webmail block, and upload inspection."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import Received, harness  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

EVENING = harness.EVENING  # outside school hours: social browsing itself is allowed
GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64 + b"district seal"


def rules_text(fingerprints: Path, *, webmail_enabled: bool = True) -> str:
    return f"""\
district:
  name: Test District
  timezone: America/Denver
  policy_url: https://www.example.k12.test/board/policies/social-networking
schedules:
  school-hours:
    weekly:
      mon-fri: ["07:30-16:00"]
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
categories:
  social:
    domains: [facebook.com, instagram.com]
  webmail:
    domains: [outlook.live.com, mail.yahoo.com]
  news:  # blocked in school hours only, so decrypted (and decided per request) in the evening
    domains: [example.org]
uploads:
  max_body: 8MB
  markers:
    - {{name: confidential, pattern: "CONFIDENTIAL", ignore_case: true}}
    - {{name: student-id, pattern: "\\\\bS\\\\d{{7}}\\\\b"}}
  fingerprints: ["{fingerprints}"]
accounts:
  google: [district.org]
  microsoft: {{tenants: [district.onmicrosoft.com], context: {GUID}, block_personal: true}}
rules:
  - id: staff-social-uploads
    description: Staff shall not post school district data, documents, photographs or logos
    who: [staff]
    what: {{categories: [social], uploads: true}}
    action: block
    bypass: none
  - id: staff-social-school-hours
    description: Individual use of social networking during school hours is prohibited
    who: [staff]
    what: {{categories: [social]}}
    when: school-hours
    action: block
    bypass: [grant, emergency]
  - id: staff-personal-webmail
    enabled: {str(webmail_enabled).lower()}
    description: Staff email students only through school controlled and monitored accounts
    who: [staff]
    what: {{categories: [webmail]}}
    action: block
    bypass: [grant]
  - id: news-school-hours
    description: News sites wait until after school (here to make example.org inspected)
    who: [staff]
    what: {{categories: [news]}}
    when: school-hours
    action: block
default: allow
"""


@pytest.fixture
def fingerprints(tmp_path: Path) -> Path:
    path = tmp_path / "fingerprints.txt"
    path.write_text(f"{hashlib.sha256(LOGO).hexdigest()}  logos/seal.png\n")
    return path


@pytest.fixture
def proxy(start_proxy: Any, fingerprints: Path) -> Any:
    return start_proxy(rules_text(fingerprints), at=EVENING)


def multipart(filename: str, data: bytes, boundary: str = "sgboundary7") -> tuple[bytes, str]:
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="caption"\r\n\r\n'
            "our new seal\r\n"
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def post(proxy: Any, url: str, body_file: Path, content_type: str, *extra: str) -> Any:
    return harness.curl(
        proxy, url, "--data-binary", f"@{body_file}", "-H", f"Content-Type: {content_type}", *extra
    )


def unique_path() -> str:
    return f"/upload/{uuid.uuid4().hex}"


def request_record(proxy: Any, reference: str) -> dict[str, Any]:
    record = proxy.record(reference)
    assert record["stage"] == "request"
    return record


# ----------------------------------------------------------------------------- sign-in headers


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("accounts.google.com", {"x-googapps-allowed-domains": ["district.org"]}),
        (
            "login.microsoftonline.com",
            {
                "restrict-access-to-tenants": ["district.onmicrosoft.com"],
                "restrict-access-context": [GUID],
            },
        ),
        ("login.live.com", {"sec-restrict-tenant-access-policy": ["restrict-msa"]}),
    ],
)
def test_sign_in_hosts_get_the_restriction_headers_replacing_the_clients(
    proxy: Any, received: Received, host: str, expected: dict[str, list[str]]
) -> None:
    path = unique_path()
    forged = [arg for name in expected for arg in ("-H", f"{name}: consumer_accounts, evil.org")]
    res = harness.curl(proxy, f"https://{host}{path}", *forged)
    assert res.status == 200
    (seen,) = received.on(host, path)
    for name, values in expected.items():
        assert seen.headers.get(name) == values
    records = [r for r in proxy.records() if r.get("host") == host and r["stage"] == "request"]
    assert records and records[-1]["sign_in_restricted"]


def test_other_hosts_get_no_restriction_headers(proxy: Any, received: Received) -> None:
    path = unique_path()
    assert harness.curl(proxy, f"https://www.example.org{path}").status == 200
    (seen,) = received.on("www.example.org", path)
    leaked = {"x-googapps-allowed-domains", "restrict-access-to-tenants", "restrict-access-context"}
    assert leaked.isdisjoint(seen.headers)


def test_sign_in_host_is_inspected_not_passed_through(proxy: Any) -> None:
    harness.curl(proxy, f"https://accounts.google.com{unique_path()}")
    connections = [
        r for r in proxy.records() if r.get("stage") == "connection"
        and r.get("host") == "accounts.google.com"
    ]  # fmt: skip
    assert connections and connections[-1]["verdict"] == "inspect"


# ----------------------------------------------------------------------------- personal webmail


@pytest.mark.parametrize("enabled", [True, False])
def test_personal_webmail_follows_the_rule_switch(
    start_proxy: Any, fingerprints: Path, received: Received, upstreams: Any, enabled: bool
) -> None:
    proxy = start_proxy(rules_text(fingerprints, webmail_enabled=enabled), at=EVENING)
    path = unique_path()
    # Switched off, nothing concerns the host: it is passed through undecrypted, so curl meets the
    # upstream's own certificate.
    cacert = None if enabled else upstreams.cert
    res = harness.curl(proxy, f"https://outlook.live.com{path}", cacert=cacert)
    if enabled:
        assert res.status == 403
        assert received.on("outlook.live.com", path) == []
        assert proxy.record(res.headers["x-socialguard-reference"])["rule"] == (
            "staff-personal-webmail"
        )
    else:
        assert res.status == 200
        assert len(received.on("outlook.live.com", path)) == 1


# ----------------------------------------------------------------------------- uploads


def test_fingerprinted_logo_upload_to_social_is_blocked_before_the_origin(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    body, ctype = multipart("seal.png", LOGO)
    (tmp_path / "body").write_bytes(body)
    path = unique_path()
    res = post(proxy, f"https://www.facebook.com{path}", tmp_path / "body", ctype)
    assert res.status == 403
    assert "staff-social-uploads" in res.body or "district" in res.body
    assert received.on("www.facebook.com", path) == []
    record = request_record(proxy, res.headers["x-socialguard-reference"])
    assert record["rule"] == "staff-social-uploads"
    assert record["action"] == "block"
    assert "fingerprint:logos/seal.png" in record["upload"]
    assert "files:1" in record["upload"]


def test_xhr_upload_gets_a_json_403_naming_the_policy_line(proxy: Any, tmp_path: Path) -> None:
    body, ctype = multipart("seal.png", LOGO)
    (tmp_path / "body").write_bytes(body)
    res = post(
        proxy, f"https://www.facebook.com{unique_path()}", tmp_path / "body", ctype,
        "-H", "Accept: application/json", "-H", "Sec-Fetch-Mode: cors",
        "-H", "Sec-Fetch-Dest: empty",
    )  # fmt: skip
    assert res.status == 403
    assert res.headers["content-type"].startswith("application/json")
    answer = json.loads(res.body)
    assert "staff-social-uploads" in json.dumps(answer)


def test_same_upload_to_a_host_no_rule_names_passes_intact(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    body, ctype = multipart("seal.png", LOGO)
    (tmp_path / "body").write_bytes(body)
    path = unique_path()
    res = post(proxy, f"https://www.example.org{path}", tmp_path / "body", ctype)
    assert res.status == 200
    (seen,) = received.on("www.example.org", path)
    assert (seen.size, seen.sha256) == (len(body), hashlib.sha256(body).hexdigest())


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("status=Attached+is+the+CONFIDENTIAL+budget", "marker:confidential"),
        ("status=grades+for+S1234567+are+in", "marker:student-id"),
    ],
)
def test_text_post_with_a_marker_to_social_is_blocked(
    proxy: Any, received: Received, tmp_path: Path, text: str, found: str
) -> None:
    (tmp_path / "body").write_text(text)
    path = unique_path()
    res = post(
        proxy, f"https://www.facebook.com{path}", tmp_path / "body",
        "application/x-www-form-urlencoded",
    )  # fmt: skip
    assert res.status == 403
    assert received.on("www.facebook.com", path) == []
    record = request_record(proxy, res.headers["x-socialguard-reference"])
    assert record["upload"] == [found]
    assert text.split("=")[1] not in json.dumps(proxy.records())  # the content is never logged


def test_text_post_without_a_marker_to_social_is_forwarded_intact(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    text = b"status=lovely+weather+today"
    (tmp_path / "body").write_bytes(text)
    path = unique_path()
    res = post(
        proxy, f"https://www.facebook.com{path}", tmp_path / "body",
        "application/x-www-form-urlencoded",
    )  # fmt: skip
    assert res.status == 200
    (seen,) = received.on("www.facebook.com", path)
    assert seen.sha256 == hashlib.sha256(text).hexdigest()
    records = [r for r in proxy.records() if r.get("stage") == "request"]
    assert records[-1]["action"] == "allow" and "upload" not in records[-1]


def test_body_over_max_body_to_social_is_blocked_at_its_headers(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(9 * 1024 * 1024)  # sparse: 9 MiB of zeros, over max_body (8MB)
    path = unique_path()
    # Refused unread: the stream is closed at the headers (a block page could be sent only after
    # reading the 9 MiB), and the record says so.
    with pytest.raises(AssertionError, match="curl failed"):
        post(proxy, f"https://www.facebook.com{path}", big, "application/octet-stream")
    assert received.on("www.facebook.com", path) == []
    [record] = [
        r
        for r in proxy.records()
        if r.get("stage") == "request" and r.get("host") == "www.facebook.com"
    ]
    assert record["action"] == "block"
    assert record["upload"] == ["over_limit"]
    assert record["answer"] == "refused_unread"


# ----------------------------------------------------------------------------- 50 MB


def _rss_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_rss_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_50mb_upload_streams_through_in_bounded_memory_without_stalling_others(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    """The proxy runs in this process (a thread), so this process's peak RSS is the proxy's (plus
    the recording upstream, which hashes in 64 KiB reads). A buffered 50 MB body would add at
    least 50 MB; streamed, it adds a few."""
    big = tmp_path / "big"
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB, not compressible to nothing
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(800):  # 50 MiB
            f.write(block)
            digest.update(block)
    size = big.stat().st_size
    path = unique_path()
    harness.curl(proxy, f"https://www.example.org{unique_path()}")  # warm: TLS, certs, caches
    _reset_rss_peak()
    before = _rss_kib()
    cmd = [
        "curl", "-sS", "--max-time", "60", "--noproxy", "", "-x", proxy.url,
        "--cacert", str(proxy.ca), "--limit-rate", "20M", "-o", "/dev/null",
        "-w", "%{http_code}", "--data-binary", f"@{big}",
        "-H", "Content-Type: application/octet-stream", f"https://www.example.org{path}",
    ]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as upload:
        small = harness.curl(proxy, f"https://www.example.org{unique_path()}")
        in_flight = upload.poll() is None
        out, err = upload.communicate(timeout=90)
    assert small.status == 200
    assert in_flight, "the small request did not complete while the big upload was in flight"
    assert out == b"200", err
    (seen,) = received.on("www.example.org", path)
    grown_mib = (_rss_peak_kib() - before) / 1024
    assert (seen.size, seen.sha256) == (size, digest.hexdigest())
    assert grown_mib < 32, f"peak RSS grew by {grown_mib:.0f} MiB for a 50 MiB upload"


def test_50mb_upload_to_social_is_refused_unread_in_bounded_memory(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    """mitmproxy reads a body whole before it can answer: a blocked body larger than the hold limit
    is refused by closing the connection, never read (read, it would cost over 100 MB here)."""
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    path = unique_path()
    harness.curl(proxy, f"https://www.example.org{unique_path()}")  # warm
    _reset_rss_peak()
    before = _rss_kib()
    res = subprocess.run(
        [
            "curl", "-sS", "--max-time", "60", "--noproxy", "", "-x", proxy.url,
            "--cacert", str(proxy.ca), "-o", "/dev/null", "-w", "%{http_code}",
            "--data-binary", f"@{big}", "-H", "Content-Type: application/octet-stream",
            f"https://www.facebook.com{path}",
        ],
        capture_output=True, timeout=90, check=False,
    )  # fmt: skip
    grown_mib = (_rss_peak_kib() - before) / 1024
    assert res.returncode != 0 or res.stdout != b"200", "the upload was answered 200"
    assert received.on("www.facebook.com", path) == []
    blocked = [
        r for r in proxy.records()
        if r.get("host") == "www.facebook.com" and r.get("stage") == "request"
    ]  # fmt: skip
    assert blocked and blocked[-1]["action"] == "block"
    assert blocked[-1]["upload"] == ["over_limit"]
    assert grown_mib < 32, f"peak RSS grew by {grown_mib:.0f} MiB for a refused 50 MiB upload"


def test_gzip_encoded_text_with_a_marker_is_blocked(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    import gzip

    (tmp_path / "body").write_bytes(gzip.compress(b"status=the+CONFIDENTIAL+report"))
    path = unique_path()
    res = post(
        proxy, f"https://www.facebook.com{path}", tmp_path / "body",
        "application/x-www-form-urlencoded", "-H", "Content-Encoding: gzip",
    )  # fmt: skip
    assert res.status == 403
    assert received.on("www.facebook.com", path) == []
    assert request_record(proxy, res.headers["x-socialguard-reference"])["upload"] == [
        "marker:confidential"
    ]


def test_held_body_that_is_no_upload_is_recorded_once(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    (tmp_path / "body").write_bytes(b"status=see+you+tonight")
    before = len([r for r in proxy.records() if r.get("stage") == "request"])
    res = post(
        proxy, f"https://www.facebook.com{unique_path()}", tmp_path / "body",
        "application/x-www-form-urlencoded",
    )  # fmt: skip
    assert res.status == 200
    after = [r for r in proxy.records() if r.get("stage") == "request"]
    assert len(after) == before + 1
    assert after[-1]["action"] == "allow" and after[-1]["host"] == "www.facebook.com"


def test_stream_large_bodies_below_the_hold_limit_is_refused(
    start_proxy: Any, fingerprints: Path
) -> None:
    """mitmproxy would switch a held body to streaming past that limit: uploads uninspected."""
    with pytest.raises(Exception, match="stream_large_bodies=1k would stream uploads"):
        start_proxy(rules_text(fingerprints), at=EVENING, stream_large_bodies="1k")


def test_uploads_still_inspected_when_mitmproxy_streams_large_bodies(
    start_proxy: Any, fingerprints: Path, received: Received, tmp_path: Path
) -> None:
    """At or above the hold limit, `stream_large_bodies` streams only what socialguard does not
    hold: marked text is still blocked; a larger body elsewhere streams through intact."""
    proxy = start_proxy(rules_text(fingerprints), at=EVENING, stream_large_bodies="16m")
    (tmp_path / "marked").write_bytes(b"status=" + b"x" * 4096 + b"+CONFIDENTIAL")
    marked_path = unique_path()
    res = post(
        proxy, f"https://www.facebook.com{marked_path}", tmp_path / "marked",
        "application/x-www-form-urlencoded",
    )  # fmt: skip
    assert res.status == 403
    assert received.on("www.facebook.com", marked_path) == []
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(17 * 1024 * 1024)
    big_path = unique_path()
    res = post(proxy, f"https://www.example.org{big_path}", big, "application/octet-stream")
    assert res.status == 200
    (seen,) = received.on("www.example.org", big_path)
    assert seen.size == 17 * 1024 * 1024


# ----------------------------------------------------------------------------- HTTP/2


def post_h2(proxy: Any, url: str, body_file: Path, content_type: str) -> tuple[str, int, str]:
    """curl over HTTP/2 to the proxy's interception: (HTTP version, status, reference header)."""
    cmd = [
        "curl", "-sS", "--http2", "--max-time", "15", "--noproxy", "", "-x", proxy.url,
        "--cacert", str(proxy.ca), "-o", "/dev/null", "-D", "-", "-w", "\nversion=%{http_version}",
        "--data-binary", f"@{body_file}", "-H", f"Content-Type: {content_type}", url,
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    version = res.stdout.rsplit("version=", 1)[1].strip()
    final = [b for b in res.stdout.replace("\r\n", "\n").split("\n\n") if b.startswith("HTTP/")][-1]
    status = int(final.split()[1])
    reference = ""
    for line in final.splitlines()[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-socialguard-reference":
            reference = value.strip()
    return version, status, reference


def test_http2_upload_of_the_fingerprinted_logo_to_social_is_blocked_before_the_origin(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    """Each HTTP/2 stream is its own request: its body is held and inspected like HTTP/1's."""
    body, ctype = multipart("seal.png", LOGO)
    (tmp_path / "body").write_bytes(body)
    path = unique_path()
    version, status, reference = post_h2(
        proxy, f"https://www.facebook.com{path}", tmp_path / "body", ctype
    )
    assert version == "2"
    assert status == 403
    assert received.on("www.facebook.com", path) == []
    record = request_record(proxy, reference)
    assert record["rule"] == "staff-social-uploads"
    assert "fingerprint:logos/seal.png" in record["upload"]


def test_http2_upload_to_a_host_no_rule_names_passes_intact(
    proxy: Any, received: Received, tmp_path: Path
) -> None:
    body, ctype = multipart("seal.png", LOGO)
    (tmp_path / "body").write_bytes(body)
    path = unique_path()
    version, status, _ = post_h2(proxy, f"https://www.example.org{path}", tmp_path / "body", ctype)
    assert (version, status) == ("2", 200)
    (seen,) = received.on("www.example.org", path)
    assert (seen.size, seen.sha256) == (len(body), hashlib.sha256(body).hexdigest())
