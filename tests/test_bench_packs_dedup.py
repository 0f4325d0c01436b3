"""benchmarks/bench_packs_dedup.py measures restic on the same data when restic is there, and
says plainly that it did not when it is not (never a remembered figure, never a verdict)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_packs_dedup.py"


def _bench(tmp_path: Path, *args: str) -> str:
    p = subprocess.run([sys.executable, str(SCRIPT), "--size-mib", "4", "--dir", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_without_restic_the_goal_is_not_judged_and_no_restic_figure_is_printed(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--restic", str(tmp_path / "no-such-restic"))
    assert "restic: NOT MEASURED" in out and "is not on the PATH" in out
    assert "(goal <= restic's growth: not judged, restic was not measured)" in out
    assert not re.search(r"restic (repository|blobs|\(median\))", out)
    assert re.search(r"casstore packs\s+(\d\.\d{3}x\s+){5}-", out)


@pytest.mark.skipif(shutil.which("restic") is None,
                    reason="restic is not installed (Debian: apt-get install restic; .ci/run installs it)")
def test_restic_is_measured_on_the_same_data(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--restic-repos", "1")
    assert re.search(r"^restic \d+\.\d+\.\d+, repository v2, --compression off$", out, re.M)
    row = re.search(r"^restic repository 1\s+((?:\d\.\d{3}x\s+){5})1\.000$", out, re.M)
    assert row is not None, out
    growth = [float(x.rstrip("x")) for x in row[1].split()]
    # restic stored every version: the first whole, the others only in part
    assert growth == sorted(growth) and 0.99 < growth[0] < 1.01 and 1.2 < growth[-1] < 5.0
    assert re.search(r"^restic blobs \(raw-data\)\s+1024 KiB\s+\d+\s+\d\.\d{3}x\s+1\.000$", out, re.M)
    m = re.search(r"packs store growth / restic's = (\d\.\d{3}) \((\d\.\d{3})x against (\d\.\d{3})x", out)
    assert m is not None and float(m[3]) == growth[-1]
    assert abs(float(m[1]) - float(m[2]) / float(m[3])) < 0.002
    assert "(goal <= 1: not judged at 4 MiB" in out
