"""`camlit benchmark` from a checkout: `python scripts/benchmark.py [--device cuda] [--json FILE]`.

`--help` lists every option; docs/performance.md gives the figures and their targets.
"""

from camlit.console import run

if __name__ == "__main__":
    run("benchmark")
