"""Training: the driver that builds the Ray Train TorchTrainer (driver), the per-worker DeepSpeed
loop (loop), and multi-stage recipes (recipe)."""
