"""camlit: which camera model took a photo, trained with PyTorch Lightning."""

# First: its atexit callback must run after multiprocessing's, which camlit.workers registers.
import camlit.termination  # noqa: F401
from camlit.workers import bind_to_launcher

# A DDP run's other processes start by importing camlit; from then on they die with the first.
bind_to_launcher()
