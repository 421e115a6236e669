"""Reading a safetensors file's header before any tensor: one place, one set of messages.

Every shipped network (``resnet``, its position head, ``frcnn``, ``xray``) is stored as
safetensors (no pickle). Their loaders check the metadata and the tensor names and shapes against
the model before loading a single tensor; this module reads what they check.
"""

from __future__ import annotations

from pathlib import Path

from clusterfw.core.errors import InputError


def read_safetensors_header(
    path: str | Path,
) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The metadata and the tensor shapes of a safetensors file, without loading tensors.

    Parameters
    ----------
    path : str or Path
        The weights file.

    Returns
    -------
    metadata : dict of str to str
        The file's ``__metadata__`` (empty when it has none).
    shapes : dict of str to tuple of int
        Shape of every tensor, by name.

    Raises
    ------
    InputError
        ``not a readable safetensors file (<reason>)`` for a missing, truncated or corrupt file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = dict(fh.metadata() or {})
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(str(path), f"not a readable safetensors file ({reason})") from None
    return metadata, shapes
