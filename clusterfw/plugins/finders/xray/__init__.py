"""The ``xray`` finder: multi-scale Poisson detection of extended X-ray sources, classified by
Kosiba's CNN on X-ray and optical cutouts."""
