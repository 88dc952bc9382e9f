"""Where a measured figure came from: stamped into every result file that evaluate and the benchmark write."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


def git_commit() -> str | None:
    """The checkout's commit (with `+dirty` for uncommitted changes), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu() -> str:
    """The CPU's model name and the vector instructions torch's kernels use on it: a CPU run repeats
    exactly on the same kind of CPU, and other kernels round otherwise."""
    try:
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    model = names[0].split(":", 1)[1].strip() if names else platform.processor() or "unknown CPU"
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def provenance() -> dict:
    """Commit, date, machine and versions, for a result file's `provenance` key."""
    return {
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "cpu": cpu(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in ("torch", "lightning", "numpy", "opencv-python-headless")},
    }
