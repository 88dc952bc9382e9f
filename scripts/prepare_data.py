"""`camlit prepare` from a checkout: cut the training photos into manipulated crops, as Kaggle made its test set.

    python scripts/prepare_data.py --input data/train --output data-512 [--tiles center|N]
        [--manipulations a,b,...] [--size 512] [--workers N]

Writes <output>/<manipulation>/<camera>/<stem>.png (or <stem>_t<k>.png with --tiles N); a rerun
only makes what is missing. See camlit.data.prepare.
"""

if __name__ == "__main__":
    # Imported here, not above: a spawned worker re-imports this script and needs none of it.
    from camlit.console import run

    run("prepare")
