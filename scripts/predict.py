"""Kaggle submission from a checkpoint: `python scripts/predict.py --ckpt best.ckpt --input test/ --output sub.csv`.

`--help` lists every option.
"""

from camlit.inference.predict import main

if __name__ == "__main__":
    main()
