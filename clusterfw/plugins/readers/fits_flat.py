"""Built-in reader: flat-sky FITS images with a celestial WCS, one file per band."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.plugin_api import Reader

if TYPE_CHECKING:
    from clusterfw.core.sky import Sky


class FlatFitsReader(Reader):
    """Flat-sky FITS (CAR, TAN, ZEA ...): FREQ, BEAMFWHM, BUNIT, NOISE header keywords."""

    name = "fits"
    version = "1.0"
    description = "2-D FITS images with a celestial WCS, one file per band"

    def can_read(self, paths: Sequence[Path]) -> bool:
        """True unless the first file is a HEALPix map (this is the fallback reader).

        A path that exists but is not a regular file (a FIFO, a device) is claimed without being
        opened, so that :meth:`read` refuses it in one line instead of blocking on it.
        """
        from clusterfw.core.fits_io import is_fits_file, is_healpix_fits

        path = Path(paths[0])
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return True
        except OSError:
            return False
        if not is_fits_file(path):
            return False
        return not is_healpix_fits(path)

    def read(self, paths: Sequence[Path], overrides: Mapping[str, Any]) -> Sky:
        """Read the bands; see :func:`clusterfw.core.fits_io.read_flat_fits`."""
        from clusterfw.core.fits_io import read_flat_fits

        return read_flat_fits(paths, overrides)

    def read_layer(self, paths: Sequence[Path], overrides: Mapping[str, Any]) -> Any:
        """The lazy ``mm`` layer and input records (:func:`~clusterfw.core.fits_io.scan_flat_fits`).

        Every check of :meth:`read` runs, with its messages; pixels stay on disk.
        """
        from clusterfw.core.fits_io import scan_flat_fits

        return scan_flat_fits(paths, overrides)


@hookimpl(trylast=True)
def clusterfw_register_readers(register):
    register(FlatFitsReader)


@hookimpl(trylast=True)
def clusterfw_register_layer_readers(register):
    """The built-in layer readers: xray (40), ymap (30), stellar_mass (25), optical (20), mm
    (10)."""
    from clusterfw.core.layers.readers import (
        MmLayerReader,
        OpticalLayerReader,
        StellarMassLayerReader,
        XrayLayerReader,
        YmapLayerReader,
    )

    for cls in (
        XrayLayerReader,
        YmapLayerReader,
        StellarMassLayerReader,
        OpticalLayerReader,
        MmLayerReader,
    ):
        register(cls)
