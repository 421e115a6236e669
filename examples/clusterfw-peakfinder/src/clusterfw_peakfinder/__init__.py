"""Example third-party clusterfw plugin: a beam-smoothed single-band peak finder."""

__version__ = "0.1.0"
