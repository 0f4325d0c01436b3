"""The terminal page: benchmarks/render_terminal.py captures the real commands and renders them."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ("runs", "show", "du", "verify", "audit", "diff")


def _svg_text(path: Path) -> str:
    """The text an SVG of rich's export shows, line by line (its spaces are no-break spaces)."""
    svg = path.read_text()
    ET.fromstring(svg)  # well-formed
    lines: dict[float, list[str]] = {}
    for m in re.finditer(r'<text[^>]*\by="([\d.]+)"[^>]*>(.*?)</text>', svg, re.S):
        lines.setdefault(float(m.group(1)), []).append(unescape(re.sub(r"<[^>]+>", "", m.group(2))))
    return "\n".join("".join(parts).replace("\xa0", " ") for _, parts in sorted(lines.items()))


def test_the_script_renders_each_command_from_a_real_store(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_terminal.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True, timeout=300)
    page = (tmp_path / "terminal.md").read_text()
    text = {name: _svg_text(tmp_path / "img" / f"term-{name}.svg") for name in SHOTS}
    for name in SHOTS:
        assert f"(img/term-{name}.svg)" in page
        assert text[name].startswith(f"$ casstore {name}")
    runs = text["runs"]
    assert "baseline" in runs and "tuned" in runs and "┃" in runs  # a table drawn as in a terminal
    tuned = re.search(r"\b([0-9a-f]{32})\b.*\btuned\b", runs)
    assert tuned is not None and tuned.group(1) in text["show"] and tuned.group(1) in text["audit"]
    assert "weights.bin" in text["show"] and "OK: verified" in text["verify"]
    assert "verification PASSED" in text["audit"] and "chunks shared" in text["diff"]
    assert "dedup ratio" in text["du"]


def test_the_docs_hold_the_page_and_its_pictures() -> None:
    page = (ROOT / "docs" / "terminal.md").read_text()
    for name in SHOTS:
        assert (ROOT / "docs" / "img" / f"term-{name}.svg").is_file() and f"img/term-{name}.svg" in page
    assert "terminal.md" in (ROOT / "mkdocs.yml").read_text()
