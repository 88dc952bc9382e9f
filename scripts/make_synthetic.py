"""Write the synthetic Kaggle-shaped camera data set; the work is camlit.data.synthetic.make_synthetic.

python scripts/make_synthetic.py --output data/synthetic [--images-per-camera 30]
    [--test-per-camera 48] [--width 1024 --height 768] [--seed 0] [--workers N]

A download shaped like Kaggle's archive (camlit.data.kaggle_layout.make_kaggle_layout):

python scripts/make_synthetic.py --kaggle_layout data/kaggle-synthetic [--images-per-camera 30]
    [--test_images 480] [--width 1368 --height 1024] [--seed 0] [--workers N]
"""

from camlit.data.commands import synthetic_main

if __name__ == "__main__":
    synthetic_main()
