"""Kaggle submission from a checkpoint: `python scripts/predict.py --ckpt best.ckpt --input test/ --output sub.csv`.

`--help` lists every option.
"""

from camlit.predict import main

if __name__ == "__main__":
    main()
