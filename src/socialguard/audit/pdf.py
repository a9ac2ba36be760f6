"""The report as PDF, printed by headless Chromium from the same HTML (its @page sets the paper).

Chromium is an optional system tool: without it `audit report --pdf` says how to get one (or to
print the HTML from any browser) instead of failing obscurely.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from socialguard.errors import ConfigError

PRINT_TIMEOUT_S = 120


def find_chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def print_pdf(page: str, out: Path, *, chromium: str | None = None) -> None:
    """Write `page` (self-contained HTML) to `out` as PDF; ConfigError when it cannot."""
    browser = chromium or find_chromium()
    if browser is None:
        raise ConfigError(
            "--pdf needs Chromium, which is not installed (apt-get install chromium); "
            "or write --html and print it to PDF from any browser"
        )
    with tempfile.TemporaryDirectory(prefix="socialguard-report-") as tmp:
        source = Path(tmp) / "report.html"
        source.write_text(page, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        try:
            done = subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    f"--user-data-dir={Path(tmp) / 'profile'}",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={target}",
                    source.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=PRINT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"--pdf: Chromium ({browser}) did not print the report: {e}") from e
        if not target.is_file() or target.stat().st_size == 0:
            raise ConfigError(
                f"--pdf: Chromium ({browser}) did not print the report "
                f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
            )
        try:
            shutil.copyfile(target, out)
        except OSError as e:
            raise ConfigError(f"{out}: cannot write: {e.strerror}") from e
