"""`camlit synthetic` from a checkout: write the synthetic Kaggle-shaped camera data set.

python scripts/make_synthetic.py --output data/synthetic [--images_per_camera 30]
    [--test_per_camera 48] [--width 1024 --height 768] [--seed 0] [--workers N]
"""

from camlit.data.commands import synthetic_main

if __name__ == "__main__":
    synthetic_main()
