"""The residual-statistics gauge of docs/experiments.md: `python scripts/residual_statistics.py [--data DIR]`.

`--help` lists every option.
"""

from camlit.data.residual_statistics import main

if __name__ == "__main__":
    main()
