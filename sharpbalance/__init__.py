"""Sharpness-diversity trade-off in deep ensembles, and SharpBalance, as an importable, tested, notebook-documented kit"""

__version__ = "0.1.0"
