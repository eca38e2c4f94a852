"""Defaults the CLI shows in --help and the library uses, in a module with no imports: the CLI's
option defaults must not pull in numpy, Pillow or torch before a command runs."""

#: Default pixel limit (width * height) for io.read_image; equal to the size at
#: which Pillow itself refuses images as a decompression bomb (2 x 89478485).
DEFAULT_MAX_PIXELS = 178_956_970
#: Outputs: 2**30 pixels (a 32768 x 32768 image: 3 GiB of 8-bit RGB, a PNG most viewers will not open).
DEFAULT_MAX_OUTPUT_PIXELS = 1 << 30
#: zlib level for PNG and TIFF: 1 encodes a 2048x2048 photo in ~0.27 s against ~1.16 s at Pillow's 6, for
#: a file ~20% larger (the same pixels); `edgesr upscale --png-compression 9` for the smallest files.
DEFAULT_COMPRESS_LEVEL = 1
#: LR tile, pixels a side, that photos are cut into (every command's default --tile; a static export runs its own).
#: With DEFAULT_OVERLAP a 512 px photo is 16 tiles of 144 (1.27x its pixels computed) where the paper's plan,
#: `--tile 128 --overlap 0.25`, computes 25 tiles of 128 (1.56x); per pixel a 144 tile costs what a 128 one does.
DEFAULT_TILE = 144
#: The paper's LR tile: `edgesr export`'s static graphs (what phones run) and `edgesr info`'s FLOP count.
EXPORT_TILE = 128
#: Tile overlap, a fraction of the tile (18 px of 144): the tiles' blending ramps (README "Upscaling": the seam check).
DEFAULT_OVERLAP = 0.125
