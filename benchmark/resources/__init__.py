"""Packaged copies of the checkout's declarative folders (``datasets/``, ``reports/specs``,
``reports/published``), mapped in by ``pyproject.toml``'s ``package-dir`` so that a wheel install
carries them; :mod:`benchmark.paths` reads the checkout's folders when they exist."""
