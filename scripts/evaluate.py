"""`camlit evaluate` from a checkout: `python scripts/evaluate.py --ckpt_path best.ckpt --input data/val`.

Or a test folder with its labels: `--input data/synthetic/test --labels data/synthetic/test_labels.csv`.
`--help` lists every option.
"""

if __name__ == "__main__":
    # Imported here, not above: a spawned worker re-imports this script and needs none of it.
    from camlit.console import run

    run("evaluate")
