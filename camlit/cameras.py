"""The ten camera models of Kaggle's IEEE SPS Camera Model Identification, as its folder names,
and the rule every class list keeps."""

from camlit.errors import CamlitError

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


def require_class_names(classes) -> None:
    """A class list to train on and name in predict's outputs: two or more, each once, none reserved."""
    if not classes:
        raise CamlitError("--data.classes: empty class list")
    twice = sorted({name for name in classes if list(classes).count(name) > 1})
    if twice:
        # Its photos went to one label, and the other was said to have none.
        raise CamlitError(f"--data.classes: {', '.join(twice)} listed twice")
    reserved = [name for name in classes if name in RESERVED_NAMES]
    if reserved:
        # predict's CSVs could not tell the class from their own column or answer of that name.
        raise CamlitError(f"--data.classes: {reserved[0]!r} is a name predict's outputs keep for themselves")
    if len(classes) == 1:
        raise CamlitError(f"--data.classes: only {classes[0]!r}; one class is no classification, give at least 2")
