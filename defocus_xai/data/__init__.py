"""Data: safe image I/O, dataset loaders with real/fake pairing, and the DefocusSynth benchmark."""

__all__ = []
