"""The exporter's output on disk: which shard files a run may keep, refusing another export's files, the end.

A store folder (or the parts folder of a ``.npz`` target) belongs to one export: one set of settings (the
fingerprint in every shard's ``meta``) and one shard split (``num_shards`` in every shard's name). A rerun
with other settings or another split is refused (or, with ``resume=False``, starts over) instead of mixing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from ..store import read_index, rebuild_index, shard_info, write_npz
from ..store.index import shard_files
from ..store.shards import SHARD_RE, read_key, remove_stale_tmp

__all__ = ["prepare_output", "check_existing", "single_file_done", "finish"]


def _foreign(path: Path, num_shards: int, fingerprint: str, covered: Collection[int]) -> str | None:
    """Why shard file ``path`` does not belong to this export (None: it does, or it is ours to redo)."""
    m = SHARD_RE.match(path.name)
    ours = int(m.group(2)) == num_shards and int(m.group(1)) in covered
    if int(m.group(2)) != num_shards:
        return f"another shard split: {int(m.group(2))} shards, not {num_shards}"
    try:
        fp = shard_info(path)["meta"].get("export", {}).get("fingerprint")
    except ValueError:
        return None if ours else "an unreadable shard file of an unknown export"
    if fp != fingerprint:
        return f"other settings (fingerprint {fp} != {fingerprint})"
    return None


def prepare_output(work: Path, *, num_shards: int, fingerprint: str, covered: Collection[int],
                   resume: bool) -> None:
    """Make ``work`` ready for this export (call it holding the output lock).

    Shard files of another export (other settings, another shard split) are refused with ``resume=True``
    and removed with ``resume=False``, as are this run's own shard files (those of the shard indices in
    ``covered``); temporary files of dead writers are removed.

    Raises
    ------
    ValueError
        ``work`` holds another export's shard files (and ``resume`` is True); the message names a file.

    Examples
    --------
    >>> import tempfile
    >>> prepare_output(Path(tempfile.mkdtemp()), num_shards=1, fingerprint="f", covered={0}, resume=True)
    """
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(work)
    for p in shard_files(work):
        why = _foreign(p, num_shards, fingerprint, covered)
        if why is not None and resume:
            raise ValueError(f"{work}: holds shard files of another export ({why}; e.g. {p.name}); mixing them "
                             "would corrupt the store: use another output, or resume=False to discard them")
        m = SHARD_RE.match(p.name)
        if not resume and (why is not None or int(m.group(1)) in covered):
            p.unlink()


def check_existing(path: Path, expect_idx: Sequence[int]) -> bool:
    """Whether an existing shard file of this export is valid for ``expect_idx`` (else it is redone).

    Examples
    --------
    >>> check_existing(Path("no-such-shard.npz"), [0, 1])
    False
    """
    try:
        shard_info(path)
        return np.array_equal(read_key(path, "sample_index"), np.asarray(expect_idx, np.int64))
    except (ValueError, KeyError):
        return False


def single_file_done(out: Path, work: Path, fingerprint: str, resume: bool) -> bool:
    """For a ``.npz`` target: whether a finished export with these settings is already there.

    Raises
    ------
    ValueError
        ``out`` is a folder, or a finished file made with other settings (and ``resume`` is True).
    """
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; a name ending in .npz means one file here (choose another name)")
    if work.exists() or not out.exists() or not resume:
        return False
    fp = shard_info(out)["meta"].get("export", {}).get("fingerprint")
    if fp != fingerprint:
        raise ValueError(f"{out}: was written with other settings (fingerprint {fp} != {fingerprint}); use "
                         "another output or resume=False")
    return True


def finish(out: Path, work: Path, n_total: int, num_shards: int) -> None:
    """Rebuild the index; for a ``.npz`` target, assemble the complete parts into ``out`` and remove them."""
    rebuild_index(work, n_total, num_shards)
    if work == out:
        return
    doc = read_index(work)
    if doc["complete"]:
        write_npz(out, [work / e["file"] for e in doc["shards"]], doc["meta"])
        shutil.rmtree(work)
