"""The layer data model: a sky is a set of named survey layers whose pixels stay on disk.

A :class:`Layer` has a kind (``mm``, ``optical``, ``xray``, ``ymap``; plugins may register
more with :func:`register_kind`), bands carrying the facts of that kind, a pixelisation
(:mod:`clusterfw.core.layers.pixelisation`) and a footprint. Every object here is a small
frozen dataclass of strings and numbers, so a layer pickles in a few kilobytes whatever the
size of its maps: tile jobs carry layers, never pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clusterfw.core.errors import InputError

if TYPE_CHECKING:
    from clusterfw.core.layers.footprint import Footprint
    from clusterfw.core.layers.pixelisation import HealpixFile, ImageFile, Pixelisation


# --------------------------------------------------------------------------- band facts
@dataclass(frozen=True)
class MmBand:
    """A millimetre band.

    Parameters
    ----------
    name : str
        Band label, e.g. ``"f150"``.
    freq_ghz : float
        Effective frequency, GHz.
    beam_fwhm_arcmin : float
        Gaussian beam FWHM, arcmin.
    noise_uk_arcmin : float or None
        White-noise depth, µK-arcmin.
    """

    name: str
    freq_ghz: float
    beam_fwhm_arcmin: float
    noise_uk_arcmin: float | None = None


@dataclass(frozen=True)
class OpticalBand:
    """An optical filter.

    Parameters
    ----------
    name : str
        The filter, one of ``u g r i z y`` (AB system).
    psf_fwhm_arcsec : float or None
        Median PSF FWHM of the band's files, arcsec.
    zero_point_mag : float
        AB magnitude of one unit of the native pixels after conversion: always 22.5, since
        cutouts are in nanomaggies (each file's own ``MAGZERO`` is applied when it is read).
    depth_mag : float or None
        Median 10σ point-source depth (``MAGLIM``), AB mag.
    """

    name: str
    psf_fwhm_arcsec: float | None
    zero_point_mag: float = 22.5
    depth_mag: float | None = None


@dataclass(frozen=True)
class XrayBand:
    """An X-ray energy band.

    Parameters
    ----------
    name : str
        Label such as ``"0.5-2.0keV"``.
    e_min_kev, e_max_kev : float
        Energy band, keV.
    psf_fwhm_arcsec : float or None
        Survey-average PSF FWHM, arcsec.
    exposure : str
        ``"map"`` when every file has an ``EXPOSURE`` extension, ``"uniform"`` when every file
        gives an ``EXPOSURE`` keyword, ``"mixed"`` otherwise.
    has_background : bool
        Whether every file has a ``BACKGROUND`` extension.
    """

    name: str
    e_min_kev: float
    e_max_kev: float
    psf_fwhm_arcsec: float | None
    exposure: str
    has_background: bool = False


@dataclass(frozen=True)
class YBand:
    """A Compton-y map.

    Parameters
    ----------
    name : str
        Usually ``"y"``.
    beam_fwhm_arcmin : float or None
        Effective beam FWHM, arcmin.
    """

    name: str
    beam_fwhm_arcmin: float | None


@dataclass(frozen=True)
class StellarMassBand:
    """A projected stellar-mass map (a tracer for mass estimators).

    Parameters
    ----------
    name : str
        Usually ``"mstar"``.
    """

    name: str


BandFacts = MmBand | OpticalBand | XrayBand | YBand | StellarMassBand | Any


# --------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class LayerKind:
    """What a layer kind is: its name, the unit its cutouts are in, and its band facts.

    Parameters
    ----------
    name : str
        ``mm``, ``optical``, ``xray``, ``ymap``, or a plugin's own.
    unit : str
        Unit of cutout pixels after conversion.
    band_type : type
        Dataclass holding the facts of one band.
    extra_planes : tuple of str
        Per-pixel planes a cutout carries besides the pixels (``exposure``, ``background``).
    description : str
    """

    name: str
    unit: str
    band_type: type
    extra_planes: tuple[str, ...] = ()
    description: str = ""


_KINDS: dict[str, LayerKind] = {}


def register_kind(kind: LayerKind) -> LayerKind:
    """Add a layer kind (plugins call this for kinds of their own); returns it.

    Raises
    ------
    ValueError
        If a different kind with the same name is already registered.
    """
    old = _KINDS.get(kind.name)
    if old is not None and old != kind:
        raise ValueError(f"layer kind {kind.name!r} is already registered differently")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> LayerKind:
    """The registered kind called ``name`` (KeyError if unknown)."""
    return _KINDS[name]


def known_kinds() -> tuple[str, ...]:
    """Names of the registered kinds, in registration order."""
    return tuple(_KINDS)


MM = register_kind(LayerKind("mm", "uK_CMB", MmBand, (), "millimetre maps, µK_CMB"))
OPTICAL = register_kind(
    LayerKind("optical", "nanomaggy", OpticalBand, (), "optical images, nanomaggies")
)
XRAY = register_kind(
    LayerKind("xray", "count", XrayBand, ("exposure", "background"), "X-ray counts with exposure")
)
YMAP = register_kind(LayerKind("ymap", "Compton-y", YBand, (), "thermal SZ Compton-y maps"))
STELLAR_MASS = register_kind(
    LayerKind(
        "stellar_mass", "solMass", StellarMassBand, (), "projected stellar mass, Msun per pixel"
    )
)


# --------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class LayerBand:
    """One band of a layer: its facts and the files holding its pixels (one, or a mosaic).

    Parameters
    ----------
    facts : MmBand, OpticalBand, XrayBand, YBand or a plugin kind's band type
    files : tuple of ImageFile or HealpixFile
        In the order a mosaic fills a pixel (the first file with data wins).
    """

    facts: BandFacts
    files: tuple[ImageFile | HealpixFile, ...]

    @property
    def name(self) -> str:
        """The band's name."""
        return str(self.facts.name)


@dataclass(frozen=True)
class Layer:
    """A survey layer: a kind, bands, a pixelisation and a footprint; pixels stay on disk.

    Parameters
    ----------
    name : str
        The layer's name in its sky (by default its kind).
    kind : str
        A registered :class:`LayerKind` name.
    bands : tuple of LayerBand
    pixelisation : FlatImage, Mosaic or HealpixMap
    footprint : Footprint or None
        Union of its files' sky regions at a coarse HEALPix order (None in tile jobs, which do
        not need it).
    """

    name: str
    kind: str
    bands: tuple[LayerBand, ...]
    pixelisation: Pixelisation
    footprint: Footprint | None = None

    @property
    def band_names(self) -> tuple[str, ...]:
        """Names of the bands, in order."""
        return tuple(b.name for b in self.bands)

    @property
    def unit(self) -> str:
        """Unit of this layer's cutouts."""
        return get_kind(self.kind).unit

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file of the layer, band by band."""
        return tuple(f.path for b in self.bands for f in b.files)

    def band(self, name: str) -> LayerBand:
        """The band called ``name`` (KeyError if absent)."""
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(name)

    def without_footprint(self) -> Layer:
        """This layer without its footprint: what a tile job carries."""
        from dataclasses import replace

        return replace(self, footprint=None)


@dataclass(frozen=True)
class LayerSky:
    """A sky as a set of named layers.

    Parameters
    ----------
    layers : tuple of Layer
        Distinct names.
    """

    layers: tuple[Layer, ...]
    inputs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be distinct, got {names}")

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, name: object) -> bool:
        return any(layer.name == name for layer in self.layers)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names, in order."""
        return tuple(layer.name for layer in self.layers)

    def of_kind(self, kind: str) -> tuple[Layer, ...]:
        """The layers of one kind."""
        return tuple(layer for layer in self.layers if layer.kind == kind)

    def union_footprint(self, names: Sequence[str] | None = None) -> Footprint:
        """Union of the footprints of the named layers (all by default)."""
        from clusterfw.core.layers.footprint import Footprint

        chosen = [self[n] for n in names] if names is not None else list(self.layers)
        prints = [layer.footprint for layer in chosen if layer.footprint is not None]
        return Footprint.union_all(prints)

    def check_overlap(self) -> None:
        """Raise :class:`InputError` for a layer that overlaps none of the others.

        With one layer there is nothing to check. Layers are checked last first, so of two
        disjoint layers the one given later is named.
        """
        if len(self.layers) < 2:
            return
        for layer in reversed(self.layers):
            others = [o.name for o in self.layers if o.name != layer.name]
            if layer.footprint is None:
                continue
            if not layer.footprint.overlaps(self.union_footprint(others)):
                first = layer.paths[0] if layer.paths else layer.name
                raise InputError(
                    first,
                    f"layer {layer.name!r} ({len(layer.paths)} file(s)) has no overlap with "
                    f"the other layers ({', '.join(others)})",
                )

    def subset(self, names: Sequence[str]) -> LayerSky:
        """A sky holding only the named layers."""
        return LayerSky(tuple(self[n] for n in names), self.inputs)


def facts_dict(facts: Any) -> Mapping[str, Any]:
    """The fields of a band-facts dataclass as a dict (for provenance and docs)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(facts) and not isinstance(facts, type):
        return asdict(facts)
    return dict(facts)
