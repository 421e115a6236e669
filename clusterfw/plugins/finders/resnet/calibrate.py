"""Platt scaling (Platt 1999) of the classifier's logits, stored as plain JSON numbers.

``p = 1 / (1 + exp(-(a · logit + b)))`` with ``a, b`` from a logistic regression of the labels on
the logits of the (natural-ratio) validation cutouts, as DeepSZ §2.2.2.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Platt:
    """A fitted Platt scaling ``sigmoid(a · logit + b)``.

    Attributes
    ----------
    a, b : float
        Slope and intercept.
    n_fit : int
        Number of cutouts it was fitted on.
    n_positive : int
        Positives among them.
    """

    a: float
    b: float
    n_fit: int = 0
    n_positive: int = 0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``logits``."""
        z = self.a * np.asarray(logits, dtype=np.float64) + self.b
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow warnings

    def save(self, path: str | Path) -> Path:
        """Write as JSON (atomically)."""
        from clusterfw.core.atomic import write_atomic

        text = json.dumps({"method": "platt", **asdict(self)}, indent=1)
        return write_atomic(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> Platt:
        """Read a JSON file written by :meth:`save`.

        Raises
        ------
        InputError
            Naming the file: unreadable, not JSON, not a Platt object, ``a``/``b`` not finite
            numbers, or ``a ≤ 0`` (the probability must grow with the network's logit).
        """
        from clusterfw.core.errors import InputError

        name = str(path)
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise InputError(
                name, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(name, f"cannot read ({exc})") from None
        if not isinstance(d, dict) or d.get("method", "platt") != "platt":
            raise InputError(name, 'not a Platt calibration (expected {"method": "platt", ...})')
        for key in ("a", "b"):
            v = d.get(key)
            if type(v) not in (int, float) or not np.isfinite(v):
                raise InputError(name, f"Platt {key!r} must be a finite number, got {v!r}")
        if not d["a"] > 0:
            raise InputError(name, f"Platt slope 'a' must be positive, got {d['a']!r}")
        counts = [d.get("n_fit", 0), d.get("n_positive", 0)]
        if not all(type(c) is int and c >= 0 for c in counts) or counts[1] > counts[0]:
            raise InputError(name, f"n_fit/n_positive {counts} are not counts")
        return cls(float(d["a"]), float(d["b"]), counts[0], counts[1])


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Platt:
    """Fit Platt scaling with scikit-learn's (practically unregularised) logistic regression.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(n,)`` raw network outputs on the validation set.
    labels : numpy.ndarray
        ``(n,)`` 0/1.

    Returns
    -------
    Platt
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(logits, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(labels).astype(int)
    if y.min() == y.max():
        raise ValueError("Platt scaling needs both classes in the validation set")
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    return Platt(float(lr.coef_[0, 0]), float(lr.intercept_[0]), int(y.size), int(y.sum()))
