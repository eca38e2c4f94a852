"""The sample crops shown in docs/comparison.png (scripts/make_docs_grid.py) and run by benchmarks/peers.py
(--samples): crops of scikit-image's freely licensed sample photos (never ../shared images), each made x4
smaller here, deterministically.

* SAMPLES: three crops, shown once clean (bicubic LR) and once DEGRADED (a phone photo sent over the web);
* EXTRA: a degraded portrait (the astronaut's whole face as an old scan shared on the web) and a noisy crop
  (a night shot), named 'portrait' and 'noisy' by peers.py's --samples (EXTRA_KEYS).

Needs scikit-image (test extra) and torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from skimage import data

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from edgesr_cli import degradations as deg  # noqa: E402

# (name, image, HR crop box y0, x0, size)
SAMPLES = [("astronaut", data.astronaut, 30, 140, 256), ("chelsea", data.chelsea, 20, 100, 256),
           ("coffee", data.coffee, 60, 180, 256)]
# the degraded rows: blur sigma 0.8 on HR, bicubic /4, Gaussian noise 4/255 + Poisson 0.3, JPEG quality 40
DEGRADED = deg.PhotoDegradationParams("camera", 0.8, 4 / 255, 0.3, False, 1234, (40,))
# the last two rows: (name, image, y0, x0, size, zoom, label, degradation); zoom: side of the centred crop shown
EXTRA = [("astronaut face", data.astronaut, 24, 128, 256, 176, "portrait, old scan",
          deg.PhotoDegradationParams("jpeg", 1.0, 0.0, 0.0, False, 0, (30, 30))),
         ("chelsea", data.chelsea, 20, 100, 256, 96, "noisy, night shot",
          deg.PhotoDegradationParams("camera", 0.0, 10 / 255, 1.0, False, 4321, (85,)))]
EXTRA_KEYS = {"portrait": EXTRA[0], "noisy": EXTRA[1]}  # peers.py --samples names them so


def make_lr(hr: np.ndarray, degradation: "deg.PhotoDegradationParams | None") -> np.ndarray:
    """x4 LR (h, w, 3) float32 on 8-bit levels of an HR crop (H, W, 3) uint8: bicubic when `degradation` is None."""
    t = torch.from_numpy(hr).permute(2, 0, 1).float() / 255.0
    lr = deg.bicubic_lr(t, 4) if degradation is None else deg.apply_photo_degradation(t, degradation, 4)
    return lr.permute(1, 2, 0).numpy()


def extra_pair(key: str) -> tuple[np.ndarray, np.ndarray]:
    """(HR uint8, LR float32) of the EXTRA crop named `key` ('portrait' or 'noisy')."""
    _, fn, y0, x0, size, _, _, degradation = EXTRA_KEYS[key]
    hr = np.ascontiguousarray(fn()[y0:y0 + size, x0:x0 + size, :3])
    return hr, make_lr(hr, degradation)


def describe(key: str) -> str:
    """One line: the EXTRA crop named `key`, where it comes from and how its LR is made."""
    name, fn, y0, x0, size, _, label, p = EXTRA_KEYS[key]
    steps = [f"blur sigma {p.blur_sigma:g}"] if p.blur_sigma > 0 else []
    steps.append("bicubic /4")
    if p.noise_sigma > 0:
        steps.append(f"Gaussian noise {p.noise_sigma * 255:g}/255")
    if p.noise_poisson > 0:
        steps.append(f"Poisson noise {p.noise_poisson:g}")
    steps += [f"JPEG {q}" for q in p.jpeg]
    return (f"{label}: skimage.data.{fn.__name__} ({name}), HR {size}x{size} at y={y0}, x={x0}; "
            f"LR: {', '.join(steps)}")
