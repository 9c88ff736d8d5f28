"""Which trials of a pixel-size scan get the accurate score: the window rule.

Every trial is rigid-fitted and scored by the cheap atom-centred target; only a window of
trials around that coarse optimum gets the profile-matched CC (:mod:`varref.scale_score`).
The coarse optimum is biased (it is CC_mask's problem again: feature widths scale with the
map), so the window is not trusted to contain the accurate optimum: it starts at the
:data:`HALF_WIDTH` trials on each side of the coarse optimum and grows, towards the accurate
maximum, until that maximum has :data:`MARGIN` scored trials on each side (or the scan ends
there). The result is then the one a full scan would give, whenever the accurate score has one
maximum over the scan; a biased coarse stage costs trials, not accuracy.
"""

from __future__ import annotations

import numpy as np

#: Trials on each side of the coarse optimum that are scored first.
HALF_WIDTH = 3
#: Scored trials the accurate maximum must have on each side: the parabola uses the best ± 2,
#: and one more lets a bootstrap replicate's maximum move by one trial.
MARGIN = 3


def initial_window(scales: np.ndarray, centre: float, half_width: int = HALF_WIDTH) -> np.ndarray:
    """Indices of the ``2 half_width + 1`` trials nearest the coarse optimum ``centre`` (fewer
    when the scan is shorter), in order; ``scales`` must be sorted."""
    n = len(scales)
    width = min(n, 2 * half_width + 1)
    nearest = int(np.argmin(np.abs(np.asarray(scales) - centre)))
    low = int(np.clip(nearest - half_width, 0, n - width))
    return np.arange(low, low + width)


def extension(n_trials: int, window: np.ndarray, scores: np.ndarray, margin: int = MARGIN
              ) -> np.ndarray:
    """Trials to add to a contiguous ``window`` (indices, in order) so that the best of its
    ``scores`` has ``margin`` trials on each side; empty when it has them or the scan ends.

    Raises
    ------
    ValueError
        When no score in the window is finite.
    """
    window = np.asarray(window)
    if not np.any(np.isfinite(scores)):
        raise ValueError("no trial in the window has a finite score")
    best = int(window[np.nanargmax(scores)])
    below = np.arange(max(0, best - margin), window[0])
    above = np.arange(window[-1] + 1, min(n_trials, best + margin + 1))
    return np.concatenate([below, above]).astype(int)
