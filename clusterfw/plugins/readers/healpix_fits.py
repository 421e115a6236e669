"""Built-in reader: HEALPix maps in FITS (healpy), one file per band."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.plugin_api import Reader

if TYPE_CHECKING:
    from clusterfw.core.sky import HealpixSky


class HealpixFitsReader(Reader):
    """HEALPix FITS maps (any Nside, RING or NESTED); same band keywords as flat FITS."""

    name = "healpix"
    version = "1.0"
    description = "HEALPix maps (PIXTYPE='HEALPIX'), one file per band; cut into TAN tiles"

    def can_read(self, paths: Sequence[Path]) -> bool:
        """True when the first file is a HEALPix map."""
        from clusterfw.core.fits_io import is_fits_file, is_healpix_fits

        path = Path(paths[0])
        if not is_fits_file(path):
            return False
        return is_healpix_fits(path)

    def read(self, paths: Sequence[Path], overrides: Mapping[str, Any]) -> HealpixSky:
        """Read the bands; see :func:`clusterfw.core.fits_io.read_healpix_fits`."""
        from clusterfw.core.fits_io import read_healpix_fits

        return read_healpix_fits(paths, overrides)

    def read_layer(self, paths: Sequence[Path], overrides: Mapping[str, Any]) -> Any:
        """The lazy ``mm`` layer and input records; see
        :func:`clusterfw.core.fits_io.scan_healpix_fits`."""
        from clusterfw.core.fits_io import scan_healpix_fits

        return scan_healpix_fits(paths, overrides)


@hookimpl(trylast=True)
def clusterfw_register_readers(register):
    register(HealpixFitsReader)
