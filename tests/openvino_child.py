"""The OpenVINO checks of tests/test_openvino.py, run in a child interpreter: OpenVINO's CPU plugin keeps a
thread pool (TBB) alive in the process that loaded it, and a pytest process that had loaded it crashed
(SIGSEGV) later in the training tests; edgesr itself loads it only in `edgesr upscale/bench --backend openvino`.

    python tests/openvino_child.py CHECK MODEL_DIR EXPORT_DIR     (exit 0: the check held)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgesr_cli.backends.torch_backend import from_model  # noqa: E402
from edgesr_cli.model import load_model_dir  # noqa: E402
from edgesr_cli.runtime.resolve import fp32_twin, load_backend  # noqa: E402
from edgesr_cli.runtime.tiling import upscale_tensor  # noqa: E402

from export_common import lr_image, psnr  # noqa: E402

TILE = 16


def fp32_parity(model, path: Path) -> None:
    """fp32 matches torch fp32 through the tiling engine: one step (fused graph) and two (components)."""
    ov_b = load_backend("openvino", path, threads=1, dtype="fp32")
    assert ov_b.name == "openvino" and ov_b.precision == "f32"
    ref_b = from_model(model, "cpu", "fp32")
    lr = lr_image()
    for steps, batch in ((1, 4), (1, 3), (2, 4)):
        ref = upscale_tensor(ref_b, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        out = upscale_tensor(ov_b, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        assert out.shape == (3, 160, 192)
        assert float((out - ref).abs().max()) < 1e-3, (steps, batch)
        assert float(ref.std()) > 0.1


def bf16(model, path: Path) -> None:
    """bf16 is about as close to fp32 as the torch backend's bf16 is."""
    lr = lr_image()
    ref = upscale_tensor(from_model(model, "cpu", "fp32"), lr, tile=TILE, seed=7)
    ov16 = upscale_tensor(load_backend("openvino", path, threads=1, dtype="bf16"), lr, tile=TILE, seed=7)
    t16 = upscale_tensor(from_model(model, "cpu", "bf16"), lr, tile=TILE, seed=7)
    assert psnr(ov16, ref) > 30, psnr(ov16, ref)
    assert psnr(ov16, ref) > psnr(t16, ref) - 6, (psnr(ov16, ref), psnr(t16, ref))


def twin(model, path: Path) -> None:
    """16-bit photos get an fp32 twin, compiled when first used; an fp32 runner has none."""
    b16 = load_backend("openvino", path, threads=1, dtype="bf16")
    t = fp32_twin(b16)
    assert t is not None and t.precision == "f32" and t._requests == {}
    lr = lr_image()
    ref = upscale_tensor(from_model(model, "cpu", "fp32"), lr, tile=TILE, seed=7)
    assert float((upscale_tensor(t, lr, tile=TILE, seed=7) - ref).abs().max()) < 1e-3
    assert fp32_twin(load_backend("openvino", path, threads=1, dtype="fp32")) is None


def _blobs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def cache(model, path: Path) -> None:
    """The compiled model is written to $EDGESR_OPENVINO_CACHE once and read back, same results."""
    import os

    folder = Path(os.environ["EDGESR_OPENVINO_CACHE"])
    a = load_backend("openvino", path, threads=1, dtype="fp32")
    blobs = _blobs(folder)
    assert blobs, "nothing cached"
    b = load_backend("openvino", path, threads=1, dtype="fp32")
    assert _blobs(folder) == blobs  # the second load read the blob, wrote nothing new
    lr = np.random.default_rng(0).random((1, 3, TILE, TILE), dtype=np.float32)
    noise = np.random.default_rng(1).standard_normal((1, 4, TILE, TILE), dtype=np.float32)
    np.testing.assert_array_equal(a.fused_one_step(lr, noise), b.fused_one_step(lr, noise))


def cache_points(model, path: Path) -> None:
    """At another detail than the export's, the compiled graph is cached at the operating points 0 and 1 only."""
    import os

    folder = Path(os.environ["EDGESR_OPENVINO_CACHE"])
    a = load_backend("openvino", path, threads=1, dtype="fp32", detail=1.0)
    blobs = _blobs(folder)
    assert a.detail == 1.0 and blobs, "nothing cached at detail 1"
    b = load_backend("openvino", path, threads=1, dtype="fp32", detail=1.0)
    assert _blobs(folder) == blobs  # read back, nothing new
    c = load_backend("openvino", path, threads=1, dtype="fp32", detail=0.3)
    assert c.detail == 0.3 and _blobs(folder) == blobs  # another detail: not cached
    lr = np.random.default_rng(0).random((1, 3, TILE, TILE), dtype=np.float32)
    noise = np.random.default_rng(1).standard_normal((1, 4, TILE, TILE), dtype=np.float32)
    at_1 = a.fused_one_step(lr, noise)
    np.testing.assert_array_equal(at_1, b.fused_one_step(lr, noise))
    assert np.abs(at_1 - c.fused_one_step(lr, noise)).max() > 1e-3  # another picture


def cache_settings(model, path: Path) -> None:
    """bf16 and fp32, one stream and two, keep blobs apart (OpenVINO's own key leaves these settings out): an fp32
    runner after a bf16 one in the same cache still matches torch fp32, and each setting reads its own blob back."""
    import os

    folder = Path(os.environ["EDGESR_OPENVINO_CACHE"])
    lr = lr_image()
    ref = upscale_tensor(from_model(model, "cpu", "fp32"), lr, tile=TILE, seed=7)
    for threads, dtype in ((2, "bf16"), (1, "bf16"), (2, "fp32"), (1, "fp32")):
        out = upscale_tensor(load_backend("openvino", path, threads=threads, dtype=dtype), lr, tile=TILE, seed=7)
        if dtype == "fp32":
            assert float((out - ref).abs().max()) < 1e-3, (threads, dtype)
    blobs = _blobs(folder)
    assert sorted({b.split("/")[0] for b in blobs}) == ["bf16-1", "bf16-2", "f32-1", "f32-2"], blobs
    out = upscale_tensor(load_backend("openvino", path, threads=2, dtype="fp32"), lr, tile=TILE, seed=7)
    assert float((out - ref).abs().max()) < 1e-3 and _blobs(folder) == blobs  # read back, nothing new


def streams(model, path: Path) -> None:
    """Two threads run a batch's tiles on two streams, one tile per request: the same numbers as one thread, for a
    batch the streams share evenly (4), unevenly (3) and a single tile, one step and two."""
    one = load_backend("openvino", path, threads=1, dtype="fp32")
    two = load_backend("openvino", path, threads=2, dtype="fp32")
    assert one.streams == 1 and two.streams == 2
    assert one._request("fused")[1] is None and two._request("fused")[1] is not None  # the AsyncInferQueue
    lr = lr_image()
    for steps, batch in ((1, 4), (1, 3), (1, 1), (2, 3)):
        a = upscale_tensor(one, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        b = upscale_tensor(two, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        assert float((a - b).abs().max()) < 1e-5, (steps, batch)
    assert float(a.std()) > 0.1


def dynamic(model, path: Path) -> None:
    """A dynamic-size export: an image smaller than a tile runs at its own size on the graph compiled for any size,
    full tiles on one fixed at the engine's tile (compiled when first needed, one per tile); all match torch fp32."""
    b = load_backend("openvino", path, threads=2, dtype="fp32")
    assert b.fixed_tile is None and b._requests == {}
    ref_b = from_model(model, "cpu", "fp32")
    small = lr_image(10, 6)
    out = upscale_tensor(b, small, tile=TILE, seed=3)
    assert out.shape == (3, 40, 24)
    assert float((out - upscale_tensor(ref_b, small, tile=TILE, seed=3)).abs().max()) < 1e-3
    assert set(b._requests) == {("fused", "any", None)}
    big = lr_image()
    for tile in (TILE, TILE + 8):
        out = upscale_tensor(b, big, tile=tile, seed=3)
        assert float((out - upscale_tensor(ref_b, big, tile=tile, seed=3)).abs().max()) < 1e-3
    assert set(b._requests) == {("fused", "any", None), ("fused", "tile", TILE), ("fused", "tile", TILE + 8)}


CHECKS = {f.__name__: f for f in (fp32_parity, bf16, twin, cache, cache_points, cache_settings, streams, dynamic)}

if __name__ == "__main__":
    torch.set_num_threads(1)
    name, model_dir, export_dir = sys.argv[1:4]
    CHECKS[name](load_model_dir(Path(model_dir)), Path(export_dir))
