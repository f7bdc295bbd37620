"""gpuproof: evidence-based GPU machine verification for DeepBrain Chain."""

__version__ = "0.1.0"
