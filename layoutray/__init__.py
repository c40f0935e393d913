"""layoutray: train, compare and serve models that generate web section layouts, on Ray.

The Python API (each name imports its dependencies when first used, so `import layoutray` is cheap):

    layoutray.load(model_dir) -> Predictor      Predictor.predict(section_type=..., elements=..., image=...)
    layoutray.synth(out_dir, examples)          -> the dataset manifest
    layoutray.train(data_dir, ...)              -> the run summary (model dir, test metrics)
    layoutray.evaluate(model_dir, data_dir)     -> the metrics dict
"""

__version__ = "0.2.0"
__all__ = ["Predictor", "evaluate", "load", "synth", "train", "__version__"]


def __getattr__(name: str):
    if name in ("load", "synth", "train", "evaluate"):
        from layoutray import api
        return getattr(api, name)
    if name == "Predictor":
        from layoutray.model.predictor import Predictor
        return Predictor
    raise AttributeError(f"module 'layoutray' has no attribute {name!r}")
