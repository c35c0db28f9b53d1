"""losslens: loss landscapes of neural networks from one batched evaluator core."""

__version__ = "0.1.0"
