"""Write the synthetic Kaggle-shaped camera data set; the work is camlit.data.synthetic.make_synthetic.

python scripts/make_synthetic.py --output data/synthetic [--images-per-camera 30]
    [--test-per-camera 48] [--width 1024 --height 768] [--seed 0] [--workers N]
"""

from camlit.data.commands import synthetic_main

if __name__ == "__main__":
    synthetic_main()
