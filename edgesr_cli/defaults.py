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
#: LR tile, pixels a side: the paper's, and every command's default --tile (an export runs its own static tile).
DEFAULT_TILE = 128
