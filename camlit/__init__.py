"""camlit: which camera model took a photo, trained with PyTorch Lightning."""

from camlit.workers import bind_to_launcher

# A DDP run's other processes start by importing camlit; from then on they die with the first.
bind_to_launcher()
