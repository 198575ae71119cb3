"""mini's lab: how ``mini`` is made and judged, apart from the plugin users load.

* :mod:`cammimic_mini.lab.data` — the clips: scikit-image's photographs under known camera motion,
  their captions, the held-out photographs the method is measured on;
* :mod:`cammimic_mini.lab.train` — the trainer (``python -m cammimic_mini.lab.train``): VAE, UNet3D and
  text encoder from a seed, resumable bit-exactly, and the export of a bundle;
* :mod:`cammimic_mini.lab.competence` — the probes of the bar (``benchmarks/mini.py``): motion size,
  caption preference, the estimator's ceiling through the VAE.

The benchmarks that use them are ``benchmarks/mini.py`` (the bar), ``benchmarks/mini_method.py``
(the method on mini), ``benchmarks/mini_direction_signal.py`` and ``benchmarks/candidates.py``; the
research log is ``docs/mini/history.md``. Nothing here is imported when the backbone loads; it
needs ``pip install -e ".[mini]"`` (scikit-image).
"""
