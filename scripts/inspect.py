"""Camera map of one photo: `python scripts/inspect.py --ckpt best.ckpt --input photo.jpg --output DIR`.

`--help` lists every option.
"""

import sys
from pathlib import Path

# Python puts this script's folder first on the path, where this file would shadow the standard
# library's `inspect`, which torch imports.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from camlit.forensics.inspect_command import main  # noqa: E402 - after the path is fixed

if __name__ == "__main__":
    main()
