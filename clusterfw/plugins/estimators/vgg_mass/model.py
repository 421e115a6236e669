"""Yan et al. (2020) VGG-style mass network in Keras 3, with a mean-and-variance head.

Architecture (Yan et al. 2020, §2.3, after Ntampaka et al. 2019): for **each channel
separately** (their multi-channel network convolves, pools and flattens each tracer on its own)

    3×3 conv, 16 filters, ReLU → 2×2 average pool (stride 2)
    3×3 conv, 32 filters, ReLU → 2×2 average pool
    3×3 conv, 64 filters, ReLU → 2×2 average pool → flatten

then the flattened channels are concatenated with the **redshift** (an input, not de Andrés et
al.'s one-network-per-z-bin: one network sees every z and learns how the angular size and the
Y–M normalisation change with E(z) and D_A), followed by fully connected 200 → 100 → 100 → 20
(ReLU, 10 % dropout after the first three, as Yan et al.) and a two-unit head. Training
flips the cutouts at random (horizontally and vertically; a no-op at inference): the simulated
skies have no preferred orientation, and the flips quadruple a small training set.

**Uncertainty: a mean-and-variance head** (Nix & Weigend 1994; Lakshminarayanan et al. 2017
without the ensemble). The head gives ``μ`` (the predicted ``ln(M500c / 3e14 Msun)``) and
``σ = softplus(s) + SIGMA_FLOOR``; training minimises the Gaussian negative log-likelihood
``½ ((t − μ)/σ)² + ln σ``. Why not a deep ensemble: here the uncertainty is dominated by the
*aleatoric* part — the intrinsic Y–M (and L_X–M, λ–M) scatter at fixed mass plus map noise,
which a single heteroscedastic head learns per cluster — while the *epistemic* part that an
ensemble measures shrinks with the training set, which the simulator makes as large as wanted.
An ensemble of K members costs K× the training and K× the CPU time per candidate. What the head
does not see is a model error outside the training distribution (masses or surveys it was not
trained on); the estimator flags candidates whose redshift lies outside the training range
instead. The 68 % coverage of ``σ`` is measured on held-out clusters (``train.py``).

TensorFlow/Keras are imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FILTERS = (16, 32, 64)
DENSE = (200, 100, 100, 20)
DROPOUT = 0.1
SIGMA_FLOOR = 1e-3


def build_model(
    npix: int,
    channels: Sequence[str],
    *,
    dropout: float = DROPOUT,
    seed: int = 0,
) -> Any:
    """The Keras model: inputs ``{"image": (npix, npix, n_ch), "z": (1,)}``, output ``(n, 2)``.

    Output columns: ``μ`` and ``σ`` (``σ > 0``) of ``ln(M500c / 3e14 Msun)``.

    Parameters
    ----------
    npix : int
        Cutout side in pixels (the pools need ``npix >= 8``).
    channels : sequence of str
        Channel names (one convolutional tower each).
    dropout : float
    seed : int
        Seed of the initialisers and dropout.
    """
    import keras
    from keras import layers

    n_ch = len(channels)
    image = keras.Input((npix, npix, n_ch), name="image")
    z_in = keras.Input((1,), name="z")
    init = keras.initializers.HeUniform(seed=seed)
    # random flips while training (the simulated skies have no preferred orientation);
    # identity at inference
    flipped = layers.RandomFlip("horizontal_and_vertical", seed=seed, name="flip")(image)
    flats = []
    for c, name in enumerate(channels):
        h = layers.Lambda(lambda t, c=c: t[..., c : c + 1], name=f"take_{name}")(flipped)
        for k, f in enumerate(FILTERS):
            h = layers.Conv2D(
                f, 3, padding="same", activation="relu", kernel_initializer=init,
                name=f"{name}_conv{k + 1}",
            )(h)  # fmt: skip
            h = layers.AveragePooling2D(2, name=f"{name}_pool{k + 1}")(h)
        flats.append(layers.Flatten(name=f"{name}_flat")(h))
    h = layers.Concatenate(name="features")([*flats, z_in])
    for k, units in enumerate(DENSE):
        h = layers.Dense(units, activation="relu", kernel_initializer=init, name=f"fc{k + 1}")(h)
        if k < 3 and dropout > 0:
            h = layers.Dropout(dropout, seed=seed + k, name=f"drop{k + 1}")(h)
    raw = layers.Dense(2, name="head")(h)
    out = layers.Lambda(_mean_sigma, name="mean_sigma")(raw)
    return keras.Model({"image": image, "z": z_in}, out, name="vgg_mass")


def _mean_sigma(raw: Any) -> Any:
    from keras import ops

    mu = raw[:, 0:1]
    sigma = ops.softplus(raw[:, 1:2]) + SIGMA_FLOOR
    return ops.concatenate([mu, sigma], axis=1)


def gaussian_nll(y_true: Any, y_pred: Any) -> Any:
    """Mean Gaussian negative log-likelihood of ``y_true`` under ``(μ, σ) = y_pred``."""
    from keras import ops

    t = ops.reshape(y_true, (-1,))
    mu, sigma = y_pred[:, 0], y_pred[:, 1]
    return ops.mean(0.5 * ops.square((t - mu) / sigma) + ops.log(sigma))


def beta_nll(beta: float) -> Any:
    """β-NLL (Seitzer et al. 2022): the Gaussian NLL of each sample weighted by ``σ^(2β)``.

    The weight is a constant for the gradient (``stop_gradient``). ``β = 0`` is the plain NLL,
    whose gradient on ``μ`` is divided by ``σ²``: where the data are noisy (low masses, high
    redshift) the mean is fitted late and stays biased. ``β = 0.5`` gives every sample a
    ``μ`` gradient of ``(μ − t)/σ`` — between the NLL and the squared error — and is what the
    shipped y network uses (its model card says which).
    """
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        t = ops.reshape(y_true, (-1,))
        mu, sigma = y_pred[:, 0], y_pred[:, 1]
        nll = 0.5 * ops.square((t - mu) / sigma) + ops.log(sigma)
        if beta > 0:
            nll = nll * ops.stop_gradient(ops.power(sigma, 2.0 * beta))
        return ops.mean(nll)

    loss.__name__ = f"beta_nll_{beta:g}"
    return loss


def load_weights(model: Any, path: str) -> None:
    """Load ``path`` (``.weights.h5``) into ``model``; one-line :class:`InputError` on failure."""
    from pathlib import Path

    from clusterfw.core.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "no such weights file")
    if not p.name.endswith(".weights.h5"):
        raise InputError(str(p), "expected a Keras .weights.h5 file")
    try:
        import h5py

        with h5py.File(p, "r"):
            pass
        model.load_weights(str(p))
    except Exception as exc:  # h5py OSError, Keras ValueError on mismatched layers
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(
            str(p), f"unreadable or mismatched weights ({type(exc).__name__}: {msg[:120]})"
        ) from None
