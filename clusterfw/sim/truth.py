"""Truth catalogues (Arrow tables with units in the field metadata) and the simulation metadata."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.core.schema import plugin_field

SIM_VERSION = "1"
CONFIG_KEY = b"clusterfw.sim_config"

# name: (arrow type, unit, description, ucd)
HALO_COLUMNS: dict[str, tuple[pa.DataType, str, str, str]] = {
    "halo_id": (pa.int64(), "", "halo index within the simulation", "meta.id"),
    "ra": (pa.float64(), "deg", "right ascension (ICRS)", "pos.eq.ra"),
    "dec": (pa.float64(), "deg", "declination (ICRS)", "pos.eq.dec"),
    "x_pix": (pa.float64(), "pix", "0-based x pixel coordinate in the map", "pos.cartesian.x"),
    "y_pix": (pa.float64(), "pix", "0-based y pixel coordinate in the map", "pos.cartesian.y"),
    "z": (pa.float64(), "", "redshift", "src.redshift"),
    "m500c": (pa.float64(), "solMass", "mass inside R500c", "phys.mass"),
    "m200c": (pa.float64(), "solMass", "mass inside R200c (NFW, Duffy08)", "phys.mass"),
    "mvir": (pa.float64(), "solMass", "virial mass (Bryan & Norman 1998)", "phys.mass"),
    "c200c": (pa.float64(), "", "NFW concentration (Duffy08)", "phys.size"),
    "r500_mpc": (pa.float64(), "Mpc", "R500c (physical)", "phys.size.radius"),
    "theta500_arcmin": (pa.float64(), "arcmin", "angular R500c", "phys.angSize"),
    "y500": (pa.float64(), "arcmin2", "spherical Compton Y inside R500c", "phys.flux"),
    "y500_median": (pa.float64(), "arcmin2", "Y500 of the scaling relation (no scatter)", ""),
    "y0": (pa.float64(), "", "central Compton-y of the unsmoothed profile", ""),
    "t_kev": (pa.float64(), "keV", "ICM temperature (Arnaud+05 M-T)", "phys.temperature"),
    "v_los": (pa.float64(), "km/s", "line-of-sight peculiar velocity (+ receding)", "phys.veloc"),
    "axis_ratio": (pa.float64(), "", "projected minor/major axis ratio", ""),
    "position_angle": (pa.float64(), "deg", "major-axis angle from +x (pixel frame)", ""),
}

SOURCE_POPULATIONS = ["radio", "dusty", "cluster_radio", "cluster_dusty"]

# columns a simulated universe adds to the halo table (clusterfw.sim.observables / universe)
OBSERVABLE_COLUMNS: dict[str, tuple[pa.DataType, str, str, str]] = {
    "dln_y": (pa.float64(), "", "ln(Y500 / median Y500): the Y scatter at fixed mass", ""),
    "richness": (pa.float64(), "", "optical richness lambda (Saro+15 lambda-M500c, scatter)", ""),
    "richness_median": (pa.float64(), "", "richness of the scaling relation (no scatter)", ""),
    "dln_richness": (pa.float64(), "", "ln(richness / median): scatter at fixed mass", ""),
    "lx500": (pa.float64(), "erg/s", "rest-frame 0.5-2 keV luminosity inside R500 (V09)", ""),
    "lx500_median": (pa.float64(), "erg/s", "lx500 of the scaling relation (no scatter)", ""),
    "dln_lx": (pa.float64(), "", "ln(lx500 / median): scatter at fixed mass", ""),
    "fx500": (pa.float64(), "erg/(s cm2)", "observed 0.5-2 keV flux inside R500 (K-corr.)", ""),
    "mstar_total": (pa.float64(), "solMass", "stellar mass of the members (toy SHMR)", ""),
}


def halo_table(columns: dict[str, np.ndarray], metadata: dict[bytes, bytes]) -> pa.Table:
    """Build the halo truth table from arrays named as in :data:`HALO_COLUMNS`."""
    fields, arrays = [], []
    for name, (dtype, unit, desc, ucd) in HALO_COLUMNS.items():
        fields.append(plugin_field(name, dtype, unit, desc, ucd))
        arrays.append(pa.array(np.asarray(columns[name]), type=dtype))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def source_table(
    columns: dict[str, Any], band_names: list[str], metadata: dict[bytes, bytes]
) -> pa.Table:
    """Build the point-source truth table (fluxes in mJy per band)."""
    spec: list[tuple[str, pa.DataType, str, str, str]] = [
        ("source_id", pa.int64(), "", "source index within the simulation", "meta.id"),
        ("ra", pa.float64(), "deg", "right ascension (ICRS)", "pos.eq.ra"),
        ("dec", pa.float64(), "deg", "declination (ICRS)", "pos.eq.dec"),
        ("x_pix", pa.float64(), "pix", "0-based x pixel coordinate", "pos.cartesian.x"),
        ("y_pix", pa.float64(), "pix", "0-based y pixel coordinate", "pos.cartesian.y"),
        (
            "population",
            pa.dictionary(pa.int8(), pa.string()),
            "",
            "radio | dusty | cluster_radio | cluster_dusty",
            "meta.code.class",
        ),
        ("halo_id", pa.int64(), "", "host halo for cluster members, else -1", "meta.id"),
        ("spectral_index", pa.float64(), "", "alpha in S ∝ nu^alpha", "spect.index"),
    ]
    fields, arrays = [], []
    for name, dtype, unit, desc, ucd in spec:
        fields.append(plugin_field(name, dtype, unit, desc, ucd))
        if name == "population":
            codes = np.asarray(columns[name], dtype=np.int8)
            arrays.append(
                pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(SOURCE_POPULATIONS))
            )
        else:
            arrays.append(pa.array(np.asarray(columns[name]), type=dtype))
    for i, band in enumerate(band_names):
        fields.append(
            plugin_field(
                f"flux_{band}", pa.float64(), "mJy", f"flux density in {band}", "phot.flux.density"
            )
        )
        arrays.append(pa.array(np.asarray(columns["flux_mjy"][i], dtype=np.float64)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def sim_metadata(config_json: str, seed: int | None, kind: str) -> dict[bytes, bytes]:
    """Schema metadata: the full config (JSON), the seed, the simulator version."""
    return {
        CONFIG_KEY: config_json.encode(),
        b"clusterfw.sim_seed": json.dumps(seed).encode(),
        b"clusterfw.sim_version": SIM_VERSION.encode(),
        b"clusterfw.sim_table": kind.encode(),
    }


def config_from_table(table: pa.Table) -> dict[str, Any]:
    """The simulation parameters stored in a truth table's schema metadata."""
    meta = table.schema.metadata or {}
    return json.loads(meta[CONFIG_KEY])
