"""`camlit predict` from a checkout: `python scripts/predict.py --ckpt_path best.ckpt --input test/ --output sub.csv`.

`--help` lists every option.
"""

from camlit.inference.predict import main

if __name__ == "__main__":
    main()
