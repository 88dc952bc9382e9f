"""`camlit predict` from a checkout: `python scripts/predict.py --ckpt_path best.ckpt --input test/ --output sub.csv`.

`--help` lists every option.
"""

if __name__ == "__main__":
    # Imported here, not above: a spawned worker re-imports this script and needs none of it.
    from camlit.console import run

    run("predict")
