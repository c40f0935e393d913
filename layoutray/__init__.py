"""layoutray: train, compare and serve web section layout generators on Ray."""

__version__ = "0.1.0"
