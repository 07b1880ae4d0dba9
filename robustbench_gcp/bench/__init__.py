"""Speed (and corruption-fidelity) measurements, behind ``gcp-robust bench ...``.

Every figure is a wall time taken by :func:`robustbench_gcp.bench.timing.time_calls`
(device-synchronized; best or median of several calls), or a ratio of two such
times measured side by side in one run, so that it stays meaningful on a busy
machine. One module per measurement; importing this package imports none of them:

- :mod:`~robustbench_gcp.bench.timing`: the one timing helper.
- :mod:`~robustbench_gcp.bench.photos`: real photographs to measure on.
- :mod:`~robustbench_gcp.bench.corruption_speed`: the torch corruptions against
  imagecorruptions (``bench corruptions``).
- :mod:`~robustbench_gcp.bench.corruption_fidelity`: their distance to the reference
  (``bench fidelity``).
- :mod:`~robustbench_gcp.bench.perturbation_speed`: ImageNet-P generation against a
  model's frames per second (``bench perturbations``).
- :mod:`~robustbench_gcp.bench.head_speed`: the pooling heads (``bench heads``).
- :mod:`~robustbench_gcp.bench.jpeg_speed`: the JPEG round trip, libjpeg against the
  device's integer transcription and nvJPEG (``bench jpeg``).
- :mod:`~robustbench_gcp.bench.attack_speed`: the suite's PGD against a plain loop
  (``bench attack``).
- :mod:`~robustbench_gcp.bench.landscape_speed`: the landscape suite against the naive
  loop (``bench landscape``).
- :mod:`~robustbench_gcp.bench.pipeline_speed`: the whole tool against the plain
  ImageFolder + imagecorruptions + DataLoader loop, as processes (``bench pipeline``).
- :mod:`~robustbench_gcp.bench.process_scaling`: one process against N under torchrun
  (``bench scaling``).
"""
