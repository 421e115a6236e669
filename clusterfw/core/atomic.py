"""Safe outputs: atomic writes, atomic folders, and refusing to overwrite a command's inputs.

Every file clusterfw writes goes through :func:`write_atomic` (or :func:`atomic_path`): the
data is written to a temporary file beside the target, named predictably
``.<name>.clusterfw-tmp-<pid>.tmp``, and renamed over the target only when complete. A
temporary file left behind by a killed process (``SIGKILL``) is removed by the next write to the
same path once its process is gone. :func:`atomic_dir` does the same for whole folders
(``clusterfw simulate``).

Operating-system errors on the output side (read-only folder, full disk, the target is a folder,
its parent is a file) become :class:`OutputError`, which the command line prints as one line
naming the path and the reason, with exit status 2.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterfw.core.errors import ClusterfwError

TMP_MARK = ".clusterfw-tmp-"
OLD_MARK = ".clusterfw-old-"
TMP_SUFFIX = ".tmp"


class OutputError(ClusterfwError):
    """An output cannot be written (or would overwrite an input).

    Parameters
    ----------
    path : str or os.PathLike
        The output path.
    problem : str
        The reason, e.g. the operating system's ``strerror``.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _reason(exc: OSError) -> str:
    """The one-line reason of an OS error (``strerror`` when there is one)."""
    if exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def temp_name(target: Path, pid: int | None = None) -> Path:
    """The temporary sibling of ``target`` used by process ``pid`` (default: this process)."""
    return target.with_name(
        f".{target.name}{TMP_MARK}{os.getpid() if pid is None else pid}{TMP_SUFFIX}"
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``target`` (files or folders) whose writing process is gone.

    Returns
    -------
    list of Path
        What was removed.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}(?:{re.escape(TMP_MARK)}|{re.escape(OLD_MARK)})(\d+)"
        rf"{re.escape(TMP_SUFFIX)}$"
    )
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def check_writable(path: str | os.PathLike[str], folder: bool = False) -> None:
    """Fail early, before any work, when ``path`` clearly cannot be written.

    Parameters
    ----------
    path : str or os.PathLike
        The output file (or folder, with ``folder=True``).
    folder : bool
        The output is a folder.

    Raises
    ------
    OutputError
        The output is a folder (for a file output) or a file (for a folder output), a parent
        is not a folder, or the nearest existing parent is not writable.
    """
    target = Path(path)
    if target.name in ("", ".", ".."):
        if not folder:
            raise OutputError(path, "is a folder, not a file name")
    if target.exists():
        if not folder and target.is_dir():
            raise OutputError(path, os.strerror(errno.EISDIR))
        if folder and not target.is_dir():
            raise OutputError(path, os.strerror(errno.ENOTDIR))
        if not folder and not os.access(target, os.W_OK) and not os.access(target.parent, os.W_OK):
            raise OutputError(path, os.strerror(errno.EACCES))
    parent = target.absolute().parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link
            raise OutputError(path, f"{parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(path, f"{os.strerror(errno.ENOTDIR)} ({parent})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(path, f"{os.strerror(errno.EACCES)} ({parent})")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        return child.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def refuse_overwrite(
    inputs: Iterable[str | os.PathLike[str] | None],
    outputs: Iterable[str | os.PathLike[str] | None],
    folders: Iterable[str | os.PathLike[str] | None] = (),
) -> None:
    """Refuse, before any work, outputs that are (or resolve to) an input of the same command.

    Paths are compared after resolving symbolic links and ``.``/``..`` and with
    :func:`os.path.samefile` (hard links). An output *folder* is refused when an input is the
    folder or lies inside it (the folder is replaced as a whole).

    Parameters
    ----------
    inputs : iterable of path
        Every file the command reads (``None`` entries are skipped).
    outputs : iterable of path
        Every file the command writes.
    folders : iterable of path
        Every folder the command writes or replaces.

    Raises
    ------
    OutputError
        Naming the output and the input it would overwrite.
    """
    ins = [Path(p) for p in inputs if p is not None]
    outs = [Path(p) for p in outputs if p is not None]
    dirs = [Path(p) for p in folders if p is not None]
    for out in outs:
        for inp in ins:
            if _same(out, inp):
                raise OutputError(out, f"is the input {inp}; refusing to overwrite it")
    for folder in dirs:
        for inp in ins:
            if _same(folder, inp) or _inside(inp, folder):
                raise OutputError(
                    folder, f"output folder holds the input {inp}; refusing to replace it"
                )
    seen: list[Path] = []
    for out in outs + dirs:
        for other in seen:
            if _same(out, other):
                raise OutputError(out, "given as two different outputs")
        seen.append(out)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    If the body raises (including ``KeyboardInterrupt`` and the CLI's termination signal),
    ``path`` is untouched and the temporary file is removed; one left by a killed process is
    removed by the next write to ``path``.

    Raises
    ------
    OutputError
        On an operating-system error writing the output (message: path and ``strerror``).
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(target, os.strerror(errno.EISDIR))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(target, _reason(exc)) from None
    remove_stale_temporaries(target)
    tmp = temp_name(target)
    try:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        os.close(fd)
    except OSError as exc:
        raise OutputError(target, _reason(exc)) from None
    try:
        try:
            yield tmp
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(target, _reason(exc)) from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            try:
                tmp.unlink()
            except OSError:
                pass


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        On an operating-system error writing the output.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def check_replaceable(path: str | os.PathLike[str], keep: Callable[[Path], bool]) -> None:
    """Refuse an output folder that is a file or holds entries ``keep`` does not accept.

    Called before any work by commands that replace a whole folder (see :func:`atomic_dir`).

    Raises
    ------
    OutputError
        Naming the folder and up to three of the foreign entries.
    """
    target = Path(path)
    check_writable(target, folder=True)
    if target.is_dir():
        try:
            foreign = sorted(p.name for p in target.iterdir() if not keep(p))
        except OSError as exc:
            raise OutputError(target, _reason(exc)) from None
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputError(
                target, f"exists and holds files this command did not write ({shown})"
            )


@contextmanager
def atomic_dir(path: str | os.PathLike[str], keep: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    The new folder is renamed into place only when the body finished, so a reader sees either
    the old folder or the complete new one, never a mix of the two (between the two renames the
    name is briefly absent). An existing ``path`` is replaced only if every entry in it passes
    ``keep`` (it looks like an earlier output of the same command), so unrelated files are
    never deleted.

    Parameters
    ----------
    path : str or os.PathLike
        The output folder.
    keep : callable
        ``keep(entry)`` is True for entries of an existing folder that may be replaced.

    Raises
    ------
    OutputError
        ``path`` is a file, holds other files, or an operating-system error occurred.
    """
    target = Path(path)
    check_replaceable(target, keep)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(target, _reason(exc)) from None
    remove_stale_temporaries(target)
    tmp = temp_name(target)
    old = target.with_name(f".{target.name}{OLD_MARK}{os.getpid()}{TMP_SUFFIX}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise OutputError(target, _reason(exc)) from None
    try:
        try:
            yield tmp
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
        except OSError as exc:
            if old.exists() and not target.exists():
                os.replace(old, target)
            raise OutputError(target, _reason(exc)) from None
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
