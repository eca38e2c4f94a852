"""The image's noise field without torch, bit for bit what `torch.randn(shape, generator=torch.Generator()
.manual_seed(seed))` gives on the CPU, so that the light install (numpy + ONNX Runtime) and the torch backend
start the diffusion from the same z_1 and write the same bytes.

What PyTorch's CPU generator does for a contiguous float32 tensor of 16 or more values (ATen's normal_fill):
  1. its MT19937 (the reference generator, seeded with init_genrand on the seed's low 32 bits) draws one 32-bit
     word per value, and each becomes the uniform (word & 0xFFFFFF) * 2**-24 in [0, 1);
  2. each block of 16 is turned, in place, into normals by Box-Muller over the pairs (j, j + 8):
     r = sqrt(-2 log(1 - u_j)), theta = 2 pi u_(j+8), n_j = r cos(theta), n_(j+8) = r sin(theta);
  3. when the count is not a multiple of 16, 16 fresh uniforms are drawn and the last 16 values recomputed.
The log, sin and cos are not libm's: they are the single-precision Cephes polynomials of avx_mathfun.h, as the
shipping wheel compiles them (multiply-adds contracted into fused ones). They are evaluated here in float32, one
rounding per operation as the hardware rounds; a fused multiply-add is one product (exact in float64) plus one
rounding. tests/test_noise.py checks this against torch.randn bit
for bit (shapes of every remainder mod 16, seeds beyond 32 bits and negative).

Fewer than 16 values (a latent grid of 16 values does not occur: 16 channels) are refused.
"""

from __future__ import annotations

import math

import numpy as np

_F32 = np.float32
_F64 = np.float64


def _c(v: float) -> float:
    """A constant as the float32 the C source's `_ps` literal becomes."""
    return float(_F32(v))


_LOG_POLY = tuple(_c(v) for v in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                                  1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                                  3.3333331174e-1))
_LOG_Q1, _LOG_Q2, _SQRTHF = _c(-2.12194440e-4), _c(0.693359375), _c(0.707106781186547524)
_FOPI = _c(1.27323954473516)  # 4 / pi
_DP = (_c(-0.78515625), _c(-2.4187564849853515625e-4), _c(-3.77489497744594108e-8))
_COS_POLY = (_c(2.443315711809948e-5), _c(-1.388731625493765e-3), _c(4.166664568298827e-2))
_SIN_POLY = (_c(-1.9515295891e-4), _c(8.3321608736e-3), _c(-1.6666654611e-1))
_TWO_PI = _F32(2 * math.pi)
_CHUNK = 1 << 15  # values per block of work: the float64 temporaries stay in the cache


def _fma(y: np.ndarray | np.float32, x: np.ndarray | np.float32, c: np.ndarray | np.float32) -> np.ndarray:
    """fl32(y * x + c) of float32 values, as a fused multiply-add: the product is exact in float64 (24 + 24 bits),
    the sum is rounded once to float32 (through float64, as the tests check against torch bit for bit)."""
    t = np.multiply(y, x, dtype=_F64)
    t += c
    return t.astype(_F32)


# Everything not fused is a single float32 operation on float32 values: computed in float32 directly, it rounds as
# the hardware does (the same bits as in float64 rounded to float32, since 53 >= 2 * 24 + 2).


def _log(u: np.ndarray) -> np.ndarray:
    """Cephes logf (avx_mathfun's log256_ps) of float32 values in (0, 1]; float32."""
    bits = u.view(np.uint32)
    e = ((bits >> 23).astype(np.int32) - 126).astype(_F32)  # exponent + 1
    m = ((bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F000000)).view(_F32)  # mantissa in [0.5, 1)
    low = m < _F32(_SQRTHF)
    x = m - _F32(1)  # exact, and negative: adding +0 where not low leaves it as it is
    e -= low
    x += np.where(low, m, _F32(0))
    z = x * x
    y = np.full_like(x, _F32(_LOG_POLY[0]))
    for c in _LOG_POLY[1:]:
        y = _fma(y, x, _F32(c))
    y *= x
    y = _fma(y, z, e * _F32(_LOG_Q1))
    y = _fma(z, _F32(-0.5), y)
    x += y
    return _fma(e, _F32(_LOG_Q2), x)


def _sincos(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cephes sinf and cosf (avx_mathfun's sincos256_ps) of float32 values >= 0; float32 arrays."""
    x = theta.astype(_F32)
    j = (x * _F32(_FOPI)).astype(np.int32)  # truncation, as cvttps
    j = (j + 1) & ~1
    q = j.astype(_F32)
    sign_sin = (j & 4).astype(np.uint32) << 29
    sign_cos = (~(j - 2) & 4).astype(np.uint32) << 29
    use_sin_poly = (j & 2) == 0
    for c in _DP:  # extended-precision reduction: x <- fl32(q * c + x), q * c exact (q a small integer)
        x = _fma(q, _F32(c), x)
    z = x * x
    yc = _fma(z, _F32(_COS_POLY[0]), _F32(_COS_POLY[1]))
    yc = _fma(yc, z, _F32(_COS_POLY[2]))
    yc *= z
    yc = _fma(yc, z, -(z * _F32(0.5)))
    yc += _F32(1)
    ys = _fma(z, _F32(_SIN_POLY[0]), _F32(_SIN_POLY[1]))
    ys = _fma(ys, z, _F32(_SIN_POLY[2]))
    ys *= z
    ys = _fma(ys, x, x)
    s = np.where(use_sin_poly, ys, yc)
    c = np.where(use_sin_poly, yc, ys)
    return (s.view(np.uint32) ^ sign_sin).view(_F32), (c.view(np.uint32) ^ sign_cos).view(_F32)


def _box_muller(u: np.ndarray) -> np.ndarray:
    """Blocks of 16 uniforms (float32, a multiple of 16 values) -> as many standard normals."""
    u = u.reshape(-1, 16)
    r = np.sqrt(_F32(-2) * _log(_F32(1) - u[:, :8]))
    s, c = _sincos(_TWO_PI * u[:, 8:])
    out = np.concatenate([r * c, r * s], axis=1).reshape(-1)
    return np.add(out, _F32(0), out=out)  # torch's fmadd(n, std 1, mean 0): -0 comes out as +0


def _uniforms(bits, n: int) -> np.ndarray:
    return (bits.random_raw(n) & 0xFFFFFF).astype(_F32) * _F32(2.0 ** -24)


def _generator(seed: int):
    return np.random.RandomState(int(seed) & 0xFFFFFFFF)._bit_generator  # init_genrand, as torch's mt19937


def _normals(bits, n: int) -> np.ndarray:
    """The next n values (a multiple of 16) as torch's full blocks of 16 make them."""
    out = np.empty(n, dtype=_F32)
    for i in range(0, n, _CHUNK):
        k = min(n, i + _CHUNK)
        out[i:k] = _box_muller(_uniforms(bits, k - i))
    return out


def randn(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Standard normals of `shape`, float32, C order: torch.randn(shape) from a CPU generator seeded with `seed`
    (any Python int; as torch, only its low 32 bits seed the generator), bit for bit."""
    n = math.prod(shape)
    if n < 16:
        raise ValueError(f"noise of {n} values: the torch-identical generator needs at least 16")
    bits = _generator(seed)
    full = n - n % 16
    out = np.empty(n, dtype=_F32)
    out[:full] = _normals(bits, full)
    if n % 16:
        bits.random_raw(n % 16)  # the uniforms of the partial block, drawn and unused
        out[n - 16:] = _normals(bits, 16)
    return out.reshape(shape)


def loaded_torch():
    """torch when this process has already imported it (its generator is the faster one), else None: the noise
    never imports torch."""
    import sys

    torch = sys.modules.get("torch")
    return torch if torch is not None and hasattr(torch, "randn") else None


def noise_field(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The image's global noise, float32 from `seed`, identical on every backend and install: torch.randn from a
    CPU generator (when torch is already loaded: the faster of the two) or randn, its bit-exact numpy twin.
    The whole field at once; the tiling engine draws the same values band by band (NoiseRows)."""
    torch = loaded_torch()
    if torch is not None:
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(shape, generator=g, dtype=torch.float32).numpy()
    return randn(shape, seed)


class _NumpyDraws:
    """numpy's MT19937 seeded as torch's generator, turned into normals by the twin above."""

    def __init__(self, seed: int):
        self.bits = _generator(seed)

    def skip(self, n: int) -> None:
        while n > 0:
            k = min(n, 1 << 20)
            self.bits.random_raw(k)
            n -= k

    def state(self):
        return self.bits.state

    def restore(self, state) -> None:
        self.bits.state = state

    def normals(self, n: int) -> np.ndarray:
        return _normals(self.bits, n)


class _TorchDraws:
    """torch's own CPU generator (faster than the twin, where torch is loaded anyway)."""

    def __init__(self, torch, seed: int):
        self.torch, self.g = torch, torch.Generator().manual_seed(int(seed))
        self.scratch = torch.empty(0)

    def skip(self, n: int) -> None:  # a float32 uniform_ draws one 32-bit word per value, as randn's uniforms
        while n > 0:
            k = min(n, 1 << 20)
            if self.scratch.numel() < k:
                self.scratch = self.torch.empty(k)
            self.scratch[:k].uniform_(generator=self.g)
            n -= k

    def state(self):
        return self.g.get_state()

    def restore(self, state) -> None:
        self.g.set_state(state)

    def normals(self, n: int) -> np.ndarray:
        return self.torch.randn(n, generator=self.g, dtype=self.torch.float32).numpy()


class NoiseRows:
    """The field `randn((k, C, H, W), seed)` drawn a band of rows at a time, bit for bit the same values, so that
    memory holds the rows the tiles in flight read and not the field (64 bytes per LR pixel for edge-tiny).

    `rows(lo, hi)` gives rows [lo, hi) of every (k, C) plane, (k, C, hi - lo, width) float32 (a view: copy what
    is kept), with `lo` never below an earlier call's; rows from H on repeat row H - 1 and columns from W on
    repeat column W - 1 (the edge padding of fields grown to one tile), `width` >= W. Each plane is a stretch
    of the generator's stream: one pass at the start records the generator's state at every plane's first
    block of 16 (torch turns uniforms into normals in blocks of 16 of the whole field, and when the count is
    not a multiple of 16 redraws the last 16 from 16 further uniforms: those are drawn in that pass too), then
    each plane draws its rows from its own state as the window moves down. torch's generator when torch is
    loaded (`noise_field`'s rule), the numpy twin otherwise."""

    def __init__(self, shape: tuple[int, int, int, int], seed: int, width: int | None = None, draws=None):
        k, c, h, w = shape
        n = k * c * h * w
        self.shape, self.n, self.width = shape, n, max(w, width or w)
        self.lo = self.hi = 0
        self.whole = None
        if n < 16:  # a tiny image of a tiny model: held whole (torch draws it; the numpy twin refuses it)
            self.whole = np.pad(noise_field(shape, seed), [(0, 0)] * 3 + [(0, self.width - w)], mode="edge")
            return
        if draws is None:
            torch = loaded_torch()
            draws = _TorchDraws(torch, seed) if torch is not None else _NumpyDraws(seed)
        self.draws = draws
        self.planes = []  # per plane: [generator state, its stream position (a multiple of 16), normals drawn ahead]
        at = 0
        for p in range(k * c):
            start = p * h * w - (p * h * w) % 16
            draws.skip(start - at)
            at = start
            self.planes.append([draws.state(), start, np.empty(0, dtype=_F32)])
        self.tail = None  # the last 16 values, redrawn (n not a multiple of 16)
        if n % 16:
            draws.skip(n - at)
            self.tail = draws.normals(16)
        self.edge = None  # row H - 1 of every plane, once drawn
        self.window = np.empty((k, c, 0, self.width), dtype=_F32)

    def _plane_rows(self, p: int, a: int, b: int) -> np.ndarray:
        """Rows [a, b) (< H) of plane p, at or after the rows that plane gave last."""
        _, _, h, w = self.shape
        state, pos, ahead = self.planes[p]
        first, end = (p * h + a) * w, (p * h + b) * w
        need = end - (pos + ahead.size)
        if need > 0:
            self.draws.restore(state)
            drawn = self.draws.normals(need + (-need) % 16)
            self.planes[p][0] = self.draws.state()
            ahead = np.concatenate([ahead, drawn])
        vals = ahead[first - pos:end - pos]
        self.planes[p][1:] = [end, ahead[end - pos:].copy()]
        t0 = self.n - 16
        if self.tail is not None and end > t0:
            vals = vals.copy()
            lo = max(first, t0)
            vals[lo - first:] = self.tail[lo - t0:end - t0]
        return vals.reshape(b - a, w)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        if lo < self.lo or hi < lo:
            raise ValueError(f"noise rows [{lo}, {hi}) after rows from {self.lo}: the window only moves down")
        k, c, h, w = self.shape
        if self.whole is not None:
            self.lo = lo
            return self.whole[:, :, np.minimum(np.arange(lo, hi), h - 1)]
        keep = self.window[:, :, max(0, lo - self.lo):]
        if hi > self.hi:
            a = max(lo, self.hi)
            real = max(0, min(hi, h) - a)
            new = np.empty((k, c, hi - a, self.width), dtype=_F32)
            for p in range(k * c) if real else ():
                new[p // c, p % c, :real, :w] = self._plane_rows(p, a, a + real)
            if real and a + real == h:
                self.edge = new[:, :, real - 1, :w].copy()
            if real < hi - a:  # rows from H on repeat row H - 1
                if self.edge is None:
                    self.edge = np.stack([self._plane_rows(p, h - 1, h)[0] for p in range(k * c)]).reshape(k, c, w)
                new[:, :, real:, :w] = self.edge[:, :, None, :]
            new[..., w:] = new[..., w - 1:w]
            keep = np.concatenate([keep, new], axis=2) if keep.shape[2] else new
            self.hi = hi
        self.window, self.lo = keep, lo
        return self.window[:, :, :hi - lo]
