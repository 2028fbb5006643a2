"""Defocus-blur estimation: images -> sigma maps in pixels."""

__all__ = []
