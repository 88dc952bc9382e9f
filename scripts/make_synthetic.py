"""`camlit synthetic` from a checkout: write the synthetic Kaggle-shaped camera data set.

python scripts/make_synthetic.py --output data/synthetic [--images_per_camera 30]
    [--test_per_camera 48] [--width 1024 --height 768] [--seed 0] [--workers N]

A download shaped like Kaggle's archive (camlit.data.kaggle_layout.make_kaggle_layout):

python scripts/make_synthetic.py --kaggle_layout data/kaggle-synthetic [--images_per_camera 30]
    [--test_images 1760] [--width 1368 --height 1024] [--seed 0] [--workers N]
"""

if __name__ == "__main__":
    # Imported here, not above: a spawned worker re-imports this script and needs none of it.
    from camlit.console import run

    run("synthetic")
