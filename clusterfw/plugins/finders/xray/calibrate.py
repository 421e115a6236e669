"""Platt scaling of the networks' logits on the validation candidates (stored as JSON).

The :class:`~clusterfw.plugins.finders.resnet.calibrate.Platt` record and its checked loader
are shared with the ``resnet`` finder; the fit here standardises the logits first, so that a
network whose validation logits are large and almost separable still gets a well-converged
(positive-slope) fit.
"""

from __future__ import annotations

import numpy as np

from clusterfw.plugins.finders.resnet.calibrate import Platt

__all__ = ["Platt", "fit_platt"]


def fit_platt(logits: np.ndarray, labels: np.ndarray, c: float = 1e3) -> Platt:
    """Fit ``p = sigmoid(a · logit + b)`` by logistic regression on standardised logits.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(n,)`` network outputs on the validation candidates.
    labels : numpy.ndarray
        ``(n,)`` 0/1.
    c : float
        Inverse L2 strength of scikit-learn's ``LogisticRegression`` on the standardised
        logits (large: practically unregularised).

    Returns
    -------
    Platt
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        raise ValueError("Platt scaling needs both classes in the validation set")
    mu, sd = float(x.mean()), float(x.std()) or 1.0
    lr = LogisticRegression(C=c, max_iter=10_000).fit(((x - mu) / sd).reshape(-1, 1), y)
    a = float(lr.coef_[0, 0]) / sd
    b = float(lr.intercept_[0]) - a * mu
    return Platt(a, b, int(y.size), int(y.sum()))
