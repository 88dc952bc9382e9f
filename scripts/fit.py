"""`camlit fit` from a checkout: `python scripts/fit.py --config scripts/configs/demo.yaml`.

`--help` lists every option.
"""

if __name__ == "__main__":
    # Imported here, not above: a spawned worker re-imports this script and needs none of it.
    from camlit.console import run

    run("fit")
