"""Real-ESRGAN style second-order degradation (Wang et al., 2021), as pure functions.

Everything here works on float32 torch tensors holding RGB images in ``[0, 1]``,
either a single image ``(3, H, W)`` or a batch ``(B, 3, H, W)``; the output of
each op has the same number of dimensions as its input.

Randomness only ever comes from an explicit ``torch.Generator`` passed by the
caller (the global RNG is never touched), and nothing is registered at import
time.

The pipeline is split in two so that one draw of random parameters can be
applied at several scales (needed for scale distillation):

* :func:`sample_params` draws a :class:`DegradationParams` (kernels, resize
  factors and modes, noise types/levels/seeds, JPEG qualities, final order).
  The params do not depend on the image size.
* :func:`apply_degradation` applies them to an HR image for a given integer
  scale and returns the LR image of size ``(H // scale, W // scale)``.

The first-order stage runs on the HR grid and is therefore identical for every
scale.  The second-order stage runs on a grid relative to the LR size (as in
Real-ESRGAN); its noise is derived from one seeded reference field at the
scale-1 size, area-downsampled to the size needed and rescaled to unit
variance, so the noise realisations at x2 and x4 are correlated instead of
independent.

:func:`degrade` is ``sample_params`` + ``apply_degradation``; :func:`bicubic_lr`
is the clean (bicubic, anti-aliased) pipeline.

The camera and JPEG pipelines (:func:`sample_photo_params`, :func:`apply_photo_degradation`) are the
first-order photo degradations beside Real-ESRGAN's.

This module is the public face of the ``degrade/`` package, which holds the parts:
``common.py`` (config JSON round trip, random draws, tensor helpers), ``kernels.py`` (blur kernels),
``ops.py`` (blur, resize, noise, JPEG, the clean bicubic LR), ``realesrgan.py`` (the second-order
pipeline) and ``camera.py`` (the photo pipelines).
"""

from __future__ import annotations

from .degrade.camera import (PhotoDegradationConfig, PhotoDegradationParams,  # noqa: F401
                             apply_photo_degradation, sample_photo_params)
from .degrade.common import quantize_8bit
from .degrade.kernels import (KERNEL_TYPES, gaussian_kernel, generalized_gaussian_kernel, plateau_kernel,
                              random_blur_kernel, sinc_kernel)
from .degrade.ops import (RESIZE_MODES, NoiseParams, add_gaussian_noise, add_noise, add_poisson_noise, bicubic_lr,
                          filter2d, jpeg_compress, random_add_noise, random_jpeg, random_resize, resize, sample_noise,
                          sample_resize, seeded_normal_field)
from .degrade.realesrgan import (DegradationConfig, DegradationParams, apply_degradation, degrade,
                                 random_mixed_kernel, sample_params)

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "DegradationConfig",
    "NoiseParams",
    "DegradationParams",
    "gaussian_kernel",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "sinc_kernel",
    "random_blur_kernel",
    "random_mixed_kernel",
    "filter2d",
    "resize",
    "sample_resize",
    "random_resize",
    "seeded_normal_field",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_noise",
    "sample_noise",
    "random_add_noise",
    "jpeg_compress",
    "random_jpeg",
    "quantize_8bit",
    "sample_params",
    "apply_degradation",
    "degrade",
    "bicubic_lr",
]
