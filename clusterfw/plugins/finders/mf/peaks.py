"""Peak finding across scales (DeepSZ §2.1): group, weight, pick the best scale, merge.

Connected pixels whose SNR (maximum over scales) exceeds the threshold form a group; the
group's position is the SNR-weighted mean of its pixel positions; its best scale is the scale
with the highest SNR anywhere in the group (found at the group's peak pixel, since the maximum
over the group of the maximum over scales is the maximum over scales at the group's peak);
groups closer than a merge radius are merged, keeping the highest SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from clusterfw.plugins.finders.mf.point_sources import label_sparse, sparse_argmax, subpixel_peak


@dataclass
class Peaks:
    """Grouped detections in pixel coordinates of a tile.

    Attributes
    ----------
    x, y : numpy.ndarray
        Positions (SNR-weighted centroid or sub-pixel peak).
    px, py : numpy.ndarray
        Integer peak pixel.
    snr : numpy.ndarray
        Peak SNR at the best scale (sub-pixel interpolated).
    scale_index : numpy.ndarray
        Index of the best scale.
    npix : numpy.ndarray
        Pixels in the group.
    merged : numpy.ndarray
        Whether other groups were merged into this one.
    """

    x: np.ndarray
    y: np.ndarray
    px: np.ndarray
    py: np.ndarray
    snr: np.ndarray
    scale_index: np.ndarray
    npix: np.ndarray
    merged: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)

    def take(self, sel: np.ndarray) -> Peaks:
        """Subset by index or boolean mask."""
        return Peaks(*(getattr(self, f)[sel] for f in self.__dataclass_fields__))


def find_peaks(
    snr: list[np.ndarray],
    max_snr: np.ndarray,
    threshold: float,
    allowed: np.ndarray | None = None,
    position: str = "centroid",
) -> Peaks:
    """Group pixels above ``threshold`` and measure each group.

    Parameters
    ----------
    snr : list of numpy.ndarray
        SNR map of each scale.
    max_snr : numpy.ndarray
        Pixel-wise maximum over scales.
    threshold : float
    allowed : numpy.ndarray, optional
        Boolean mask of pixels that may be part of a detection.
    position : {"centroid", "peak"}
        SNR-weighted centroid of the group (the paper's choice) or parabolic sub-pixel peak.
    """
    above = max_snr > threshold
    if allowed is not None:
        above &= allowed
    # the pixels above threshold are few: label them without another pass over the map
    pixels, labels, n = label_sparse(above, eight=True)
    if n == 0:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int64)
        return Peaks(z, z, zi, zi, z, zi, zi, np.zeros(0, dtype=bool))
    py, px = sparse_argmax(max_snr, pixels, labels, n)
    stack_at_peak = np.stack([s[py, px] for s in snr])
    best = np.argmax(stack_at_peak, axis=0)
    npix = np.bincount(labels, minlength=n + 1)[1:]
    sub_y, sub_x, val = subpixel_peak(snr, py, px, which=best)
    if position == "centroid":
        # SNR-weighted mean position (ndimage.center_of_mass on the sparse pixels)
        w = np.take(max_snr.reshape(-1), pixels).astype(np.float64)
        pyy, pxx = np.divmod(pixels, max_snr.shape[1])
        norm = np.bincount(labels, weights=w, minlength=n + 1)[1:]
        y = np.bincount(labels, weights=w * pyy, minlength=n + 1)[1:] / norm
        x = np.bincount(labels, weights=w * pxx, minlength=n + 1)[1:] / norm
    else:
        y, x = sub_y, sub_x
    return Peaks(x, y, px, py, val, best, npix, np.zeros(n, dtype=bool))


def merge_peaks(peaks: Peaks, radius_pix: float) -> Peaks:
    """Merge groups closer than ``radius_pix``; each merged set keeps its highest-SNR member."""
    if len(peaks) < 2 or radius_pix <= 0:
        return peaks
    tree = cKDTree(np.column_stack([peaks.x, peaks.y]))
    pairs = tree.query_pairs(radius_pix, output_type="ndarray")
    if pairs.size == 0:
        return peaks
    n = len(peaks)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    order = np.lexsort((-peaks.snr, comp))
    first = np.ones(n, dtype=bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    keep = order[first]
    sizes = np.bincount(comp)
    out = peaks.take(keep)
    out.merged = sizes[comp[keep]] > 1
    return out
