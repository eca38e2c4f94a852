"""Image I/O, one part a module; :mod:`edgesr_cli.io` is its public face (it lists the parts) and the place to
import from. Nothing is imported here, so each part loads only what it needs."""
