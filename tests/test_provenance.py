import re
import subprocess
from pathlib import Path

import torch

from camlit.provenance import git_commit, provenance

CHECKOUT = Path(__file__).resolve().parents[1]


def test_the_commit_is_this_checkouts():
    head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        assert git_commit() is None
        return
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", git_commit())
    assert git_commit().split("+")[0] == head.stdout.strip()


def test_a_stamp_names_date_machine_and_versions():
    stamp = provenance()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", stamp["date"])
    assert "cores" in stamp["machine"] and stamp["versions"]["torch"] and stamp["versions"]["lightning"]
    assert stamp["cpu"].endswith(torch.backends.cpu.get_cpu_capability())
