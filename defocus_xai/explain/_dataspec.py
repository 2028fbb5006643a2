"""Parse the ``--data`` specifications of the command line (private; to move to ``defocus_xai.data``).

``synth[:N[:SEED]]``   DefocusSynth with N samples (default 64) and seed SEED (default 0);
``folder:PATH``        FolderDataset (real/ and fake/ sub-folders, see ``defocus_xai.data``);
``ff++:PATH[:SPLIT]``  FaceForensicsDataset of the FaceForensics++ layout (split default ``test``).
``cifake:PATH``        CIFAKEDataset.
"""

from __future__ import annotations

__all__ = ["parse_data_spec"]


def parse_data_spec(spec: str, *, size: int | None = None):
    """Build the data set named by ``spec``.

    Parameters
    ----------
    spec : str
        See the module documentation.
    size : int, optional
        Image size (synth: rendered size, default 128; folders: resize, default 299).

    Examples
    --------
    >>> len(parse_data_spec("synth:8:3", size=32))      # doctest: +SKIP
    8
    """
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "synth":
        from ..data.synth import DefocusSynth

        parts = [p for p in rest.split(":") if p] if rest else []
        if len(parts) > 2:
            raise ValueError(f"--data {spec!r}: expected synth[:N[:SEED]]")
        try:
            n = int(parts[0]) if parts else 64
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise ValueError(f"--data {spec!r}: N and SEED must be integers (synth[:N[:SEED]])") from None
        return DefocusSynth(n, size=size or 128, seed=seed)
    if not rest:
        raise ValueError(f"--data {spec!r}: expected synth[:N[:SEED]], folder:PATH, ff++:PATH[:SPLIT] or "
                         "cifake:PATH")
    from ..data import datasets

    if kind == "folder":
        return datasets.FolderDataset(rest, size=size or 299)
    if kind in ("ff++", "ffpp", "faceforensics"):
        path, split = rest, "test"
        head, sep, tail = rest.rpartition(":")
        if sep and tail in ("train", "val", "test", "all"):
            path, split = head, tail
        return datasets.FaceForensicsDataset(path, split=None if split == "all" else split, size=size or 299)
    if kind == "cifake":
        return datasets.CIFAKEDataset(rest, size=size or 32)
    raise ValueError(f"--data {spec!r}: unknown kind {kind!r} (synth, folder, ff++, cifake)")
