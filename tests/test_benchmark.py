import importlib.util
import json
import math

from camlit.benchmark import main

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
]
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def test_tiny_benchmark_reports_every_figure(tmp_path, capsys):
    path = tmp_path / "figures.json"
    # One thread: on a machine busy with other work, two would thrash each other and take minutes.
    report = main(["--tiny", "--threads", "1", "--json", str(path)])
    figures = report["figures"]
    expected = FIGURES + (["step/torchvision/channels_last/fp32", "ratio/camlit_vs_torchvision"] * HAS_TORCHVISION)
    missing = [name for name in expected if name not in figures]
    assert not missing, f"missing {missing}; notes: {report['notes']}"
    assert all(math.isfinite(value) and value > 0 for value in figures.values()), figures
    if not HAS_TORCHVISION:
        assert report["notes"]["step/torchvision"] == "torchvision not installed: skipped"
    assert report["notes"]["step/camlit/channels_last/fp32/compiled"] == "skipped in --tiny mode"
    assert json.loads(path.read_text()) == report
    assert {row["result"] for row in report["targets"]} <= {"PASS", "MISS", "skipped", "-"}
    table = capsys.readouterr().out
    for row in report["targets"]:
        assert row["target"] in table
    assert "data/loader_cache" in table and "images/s" in table
