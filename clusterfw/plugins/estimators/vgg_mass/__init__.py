"""``vgg_mass``: cluster masses from y (X-ray, stellar-mass) cutouts with a VGG network (issue 15).

See ``docs/estimators/vgg_mass.md``. Modules: ``plugin`` (the estimator and ``clusterfw train
vgg_mass``), ``model``, ``data``, ``train``, ``card``, ``baseline`` (Y–M inversion),
``redshifts``, ``cutouts``. Nothing here imports TensorFlow at import time.
"""
