"""Camera map of one photo: `python scripts/inspect_photo.py --ckpt_path best.ckpt --input photo.jpg --output DIR`.

Not `inspect.py`: every script in this folder has the folder first on its import path, where a
file of that name would replace the standard library's `inspect` (which numpy and torch import).
`--help` lists every option.
"""

from camlit.console import run

if __name__ == "__main__":
    run("inspect")
