"""The model: the transformer (network), layout <-> tokens (tokenizer), constrained generation
(generate), the serving artifact and its load checks (artifact, golden, layout_checks), the one
request validator (request), the Predictor behind the Python API, CLI and Serve (predictor), and
phase upgrade (upgrade)."""
