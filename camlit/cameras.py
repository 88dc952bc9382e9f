"""The ten camera models of Kaggle's IEEE SPS Camera Model Identification, as its folder names."""

KAGGLE_CAMERAS: tuple[str, ...] = (
    "HTC-1-M7",
    "LG-Nexus-5x",
    "Motorola-Droid-Maxx",
    "Motorola-Nexus-6",
    "Motorola-X",
    "Samsung-Galaxy-Note3",
    "Samsung-Galaxy-S4",
    "Sony-NEX-7",
    "iPhone-4s",
    "iPhone-6",
)

# Names the outputs take for themselves: predict --unknown's camera name, and the probability
# table's other columns. A class of one of these names would be indistinguishable from them.
UNKNOWN_CAMERA = "unknown"
RESERVED_NAMES: tuple[str, ...] = ("fname", UNKNOWN_CAMERA, "unknown_score")
