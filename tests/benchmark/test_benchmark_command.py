import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, end_session, live_members, one_error_line, wait_for

from camlit.benchmark.command import main
from camlit.benchmark.projection import data_settings

# Timings depend on the machine and its load, so only the presence and sanity of each figure is tested.
FIGURES = [
    "step/camlit/nchw/fp32",
    "step/camlit/nchw/bf16",
    "step/camlit/channels_last/fp32",
    "step/camlit/channels_last/bf16",
    "data/cache_build",
    "data/raw_imread_jpeg",
    "data/loader_jpeg",
    "data/loader_png",
    "data/loader_cache",
    "data/loader_cache_first_read",
    "framework/lightning",
    "framework/plain",
    "memory/peak_rss_n_mb",
    "memory/peak_rss_10n_mb",
    "e2e/fit_cache_loader",
    "ratio/lightning_vs_plain",
    "ratio/loader_vs_raw",
    "ratio/cache_vs_jpeg",
    "ratio/rss_10n_vs_n",
    "ratio/e2e_vs_step",
    "ratio/cache_first_read_vs_checked",
    "balance/even_n",
    "balance/skewed_10n_peak_mb",
    "ratio/balance_even_10n_vs_n",
    "ratio/balance_skewed_10n_vs_n",
    "forensics/camera_table_one_blas_thread",
    "forensics/camera_table_default_blas",
    "ratio/camera_table_one_vs_default_blas",
]
KAGGLE_GPU = CONFIGS / "kaggle_gpu.yaml"
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.mark.slow
def test_tiny_benchmark_reports_every_figure(tmp_path, capsys):
    path = tmp_path / "figures.json"
    # One thread: on a machine busy with other work, two would thrash each other and take minutes.
    report = main(["--tiny", "--threads", "1", "--json", str(path)])
    figures = report["figures"]
    expected = FIGURES + (["step/torchvision/channels_last/fp32", "ratio/camlit_vs_torchvision"] * HAS_TORCHVISION)
    missing = [name for name in expected if name not in figures]
    assert not missing, f"missing {missing}; notes: {report['notes']}"
    assert all(math.isfinite(value) and value > 0 for value in figures.values()), figures
    # Building the cache decodes every photo: it cannot outrun decoding them alone by orders of magnitude.
    assert figures["data/cache_build"] < 20 * figures["data/raw_imread_jpeg"], figures
    if not HAS_TORCHVISION:
        assert report["notes"]["step/torchvision"] == "torchvision not installed: skipped"
    assert report["notes"]["step/camlit/channels_last/fp32/compiled"] == "skipped in --tiny mode"
    written = json.loads(path.read_text())
    assert set(written.pop("provenance")) == {"commit", "date", "machine", "cpu", "python", "versions"}
    assert written == report
    assert {row["result"] for row in report["targets"]} <= {"PASS", "MISS", "skipped", "-"}
    table = capsys.readouterr().out
    for row in report["targets"]:
        assert row["target"] in table
    assert "data/loader_cache" in table and "images/s" in table


def test_projection_reads_each_stack_through_the_cli(capsys):
    shipped = f"--config {KAGGLE_GPU}"
    report = main(
        ["--tiny", "--threads", "1", "--project", shipped, f"{shipped} --data.num_workers 20 --data.cache_dir null"]
    )
    cached, uncached = report["projections"]
    # The config's own data settings, apart from the tiny crop.
    assert {k: cached[k] for k in ("crop_size", "crops_per_image", "manipulation_p", "cache", "workers")} == {
        "crop_size": 32, "crops_per_image": 4, "manipulation_p": 0.0, "cache": True, "workers": 8,
    }  # fmt: skip
    assert (uncached["cache"], uncached["workers"]) == (False, 20)
    for row in report["projections"]:
        assert row["per_worker"] > 0 and row["projected"] == pytest.approx(row["per_worker"] * row["workers"])
        assert row["workers_needed"] == math.ceil(5500 / row["per_worker"])
        assert 0 < row["gpu_busy"] <= 1
    # More than 14 workers misses the goal however fast each is.
    assert uncached["result"] == "MISS"
    table = capsys.readouterr().out
    assert "GPU busy" in table and "--data.num_workers 20" in table


def test_projection_of_a_stack_that_cannot_load_is_one_error_line(capsys):
    # 224 px crops of 64 px tiles.
    with pytest.raises(SystemExit) as exit_info:
        main(["--threads", "1", "--side", "64", "--images", "4", "--project", f"--config {KAGGLE_GPU}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --project '--config {KAGGLE_GPU}': --data.crop_size 224 ")
    assert err[0].endswith("(the stand-in tiles: --side 64)")


def test_a_stack_is_read_as_fit_reads_it_and_refused_as_fit_refuses_it(capsys):
    """A config with `base:` (the shipped rehearsal_cpu.yaml) was refused, an unclosed quote was a
    traceback, and --data.num_workers -1 was projected onto -1 workers."""
    rehearsal, base = (
        yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["data"] for name in ("rehearsal_cpu", "kaggle_gpu")
    )
    settings = data_settings(["--config", str(CONFIGS / "rehearsal_cpu.yaml")])
    own = {k: v for k, v in rehearsal.items() if not isinstance(v, str)}  # paths are read as absolute ones
    assert own and {k: settings[k] for k in own} == own  # its own, over its base's
    inherited = {k: v for k, v in base.items() if k not in rehearsal and not isinstance(v, str)}
    assert inherited and {k: settings[k] for k in inherited} == inherited
    line = one_error_line(capsys, lambda: main(["--tiny", "--threads", "1", "--project", "'unterminated"]))
    assert line == "error: --project 'unterminated: No closing quotation"
    line = one_error_line(capsys, lambda: main(["--tiny", "--threads", "1", "--project", "--data.num_workers -1"]))
    assert "--data.num_workers must be 0 or more, got -1" in line


def test_cuda_run_without_cuda_builds_its_inputs_and_skips_the_device_sections():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the full tiny run covers it")
    report = main(["--device", "cuda", "--tiny", "--threads", "1"])
    assert {report["notes"][name] for name in ("step", "framework and e2e", "memory")} == {
        "skipped: no CUDA device here"
    }
    assert "data/loader_cache" in report["figures"] and not any(k.startswith("step/") for k in report["figures"])
    # The targets are CUDA's: camlit against torchvision in bf16.
    assert report["targets"][0]["result"] == "skipped" and report["sizes"]["crop"] == 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "argument --threads: must be 1 or more, not 0"),
        (["--side", "-1"], "argument --side: must be 1 or more, not -1"),
        (["--json", "{tmp}"], "--json {tmp}: is a folder; name a file"),
        (["--json", "{tmp}/new/"], "--json {tmp}/new/: ends with a separator, so names a folder"),
        (["--tiny", "--side", "8"], "--data.crop_size 32 is larger than every image"),
        (["--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
        (["--batch", "1"], "--batch must be at least 2 (batch norm needs 2 crops), got 1"),
        (["--crop", "600"], "--crop 600: larger than the stand-in photos (--side 512)"),
    ],
)
def test_bad_arguments_are_one_error_line(tmp_path, capsys, argv, message):
    """argparse's own errors were its usage block and `camlit benchmark: error: ...`."""
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    line = one_error_line(capsys, lambda: main([*argv, "--project", "--threads", "1"] if "--tiny" in argv else argv))
    assert message.format(tmp=tmp_path) in line


def memory_fit_child(session: int) -> int | None:
    """The process of `session` running the memory section's fit, once it has started."""
    for pid in live_members(session):
        try:
            if b"peak_rss_of_fit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_benchmark_ends_its_memory_fit_and_its_stand_in_photos(tmp_path, signum):
    """The memory fit's child ran on after its parent, and the stand-in photos stayed in /tmp."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "camlit", "benchmark", "--tiny", "--threads", "1", "--json", str(tmp_path / "b.json")],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: memory_fit_child(process.pid), timeout=600, interval=0.05), "no memory fit started"
        child = memory_fit_child(process.pid)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        # Within a few seconds: left alone, the short fit runs on for longer than that.
        assert wait_for(lambda: child not in live_members(process.pid), timeout=3), "the memory fit lives on"
        if signum == signal.SIGTERM:
            assert process.returncode == 143 and "Traceback" not in stderr, stderr[-2000:]
            assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM:")
            assert not list(temporary.iterdir()) and not (tmp_path / "b.json").exists()
    finally:
        end_session(process.pid)
