"""Measure camlit's step rate, data path, framework overhead and memory against their targets.

    python scripts/benchmark.py [--device cpu|cuda] [--json FILE] [--tiny] [--no-compile]

See camlit.benchmark; `--help` lists the size overrides.
"""

from camlit.benchmark import main

if __name__ == "__main__":
    main()
