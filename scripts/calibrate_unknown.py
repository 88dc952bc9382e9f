"""Calibrate unknown-camera rejection: `python scripts/calibrate_unknown.py --ckpt_path best.ckpt`.

Writes `best.unknown.npz` beside the checkpoint, which `predict.py --unknown` reads.
"""

from camlit.console import run

if __name__ == "__main__":
    run("calibrate")
