"""The LR degradations, one part a module; :mod:`edgesr_cli.degradations` is their public face (it lists the
parts) and the place to import from. Nothing is imported here."""
