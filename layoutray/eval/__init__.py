"""Evaluation: per-layout and per-element metrics (metrics), maxIoU and layout FID (generative,
fid, fid_train), scoring a model on a split (evaluate), truth | generated pictures (preview), and
statistics shared by sweeps and the canary judge (stats)."""
