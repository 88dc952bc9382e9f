"""`camlit fit` from a checkout: `python scripts/fit.py --config scripts/configs/demo.yaml`.

`--help` lists every option.
"""

from camlit.training.cli import main

if __name__ == "__main__":
    main()
