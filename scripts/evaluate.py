"""`camlit evaluate` from a checkout: `python scripts/evaluate.py --ckpt_path best.ckpt --input data/val`.

Or a test folder with its labels: `--input data/synthetic/test --labels data/synthetic/test_labels.csv`.
`--help` lists every option.
"""

from camlit.inference.evaluate import main

if __name__ == "__main__":
    main()
