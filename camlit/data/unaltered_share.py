"""The share of training crops that reach the network unaltered, stated, checked and logged.

Kaggle weighs unaltered test images 0.7; on a prepared nine-folder tree, drawing images as they
come gives a ninth of the crops unaltered, so the GPU recipe sets `--data.unaltered_share`.
"""

from __future__ import annotations

import logging

from lightning.pytorch.utilities import rank_zero_only

from camlit.data.manipulations import UNALTERED
from camlit.data.samples import Sample
from camlit.errors import CamlitError

log = logging.getLogger(__name__)


def unaltered_crop_share(samples: list[Sample], unaltered_share: float | None, manipulation_p: float) -> float:
    """The expected share of training crops that reach the network unaltered, once any ramp is over."""
    drawn = unaltered_share
    if drawn is None:
        drawn = sum(s.manipulation == UNALTERED for s in samples) / max(1, len(samples))
    return drawn * (1 - manipulation_p)


def require_pools(
    samples: list[Sample],
    classes: list[str],
    unaltered_share: float | None,
    where: str,
    weights: dict[str, float] | None = None,
) -> None:
    """With `unaltered_share`, every class needs the unaltered and the manipulated images it draws
    from; with `weights` too, manipulated images of a manipulation that weighs more than 0."""
    if unaltered_share is None:
        return
    weighed = {name for name, weight in (weights or {}).items() if weight > 0}
    for kind, needed in (("unaltered", unaltered_share > 0), ("manipulated", unaltered_share < 1)):
        if kind == "manipulated" and weights:
            kind = f"{', '.join(sorted(weighed))} (--data.manipulation_weights)"
            present = {s.label for s in samples if s.manipulation in weighed}
        else:
            present = {s.label for s in samples if (s.manipulation == UNALTERED) == (kind == "unaltered")}
        absent = [name for label, name in enumerate(classes) if label not in present]
        if needed and absent:
            raise CamlitError(
                f"--data.unaltered_share {unaltered_share}: {where} has no {kind} training images of "
                f"{', '.join(absent)}; prepare it into manipulation folders with camlit prepare, "
                "or set --data.unaltered_share null"
            )


@rank_zero_only
def log_unaltered_share(samples: list[Sample], unaltered_share: float | None, manipulation_p: float) -> None:
    drawn = "as the images come" if unaltered_share is None else f"--data.unaltered_share {unaltered_share}"
    share = unaltered_crop_share(samples, unaltered_share, manipulation_p)
    log.info("unaltered training crops: %.1f%% (%s, --data.manipulation_p %s)", 100 * share, drawn, manipulation_p)
