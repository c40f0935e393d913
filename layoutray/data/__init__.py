"""Data: the vocabulary (vocab), the Parquet dataset format (dataset), the synthetic generator
(synth, sections, page_grid) and its Ray Data stream (stream), validation and JSONL export
(validate), imports (importer), real web pages (web/), and the Ray Data pipeline to training
tensors (pipeline: producer side; batches: consumer side; augment; imaging)."""
