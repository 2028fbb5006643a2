"""Data set specifications of the command line: ``synth[:N[:SEED]][:vVERSION]``, ``folder:PATH``,
``ff++:PATH``, ``cifake:PATH``.

Examples
--------
>>> parse_data_spec("synth:500:3")
('synth', {'n': 500, 'seed': 3})
>>> parse_data_spec("synth:500:v2.0")
('synth', {'n': 500, 'version': '2.0'})
>>> parse_data_spec("folder:/data/mine")
('folder', {'path': '/data/mine'})
>>> parse_data_spec("ff++:/data/FF++:test")
('ff++', {'path': '/data/FF++', 'split': 'test'})
"""

from __future__ import annotations

__all__ = ["parse_data_spec", "dataset_from_spec", "DATA_SPEC_HELP"]

#: Default DefocusSynth seed per role: training, validation and evaluation never share scenes by default.
SYNTH_DEFAULT_SEED = {"train": 0, "val": 2, "test": 1}
SYNTH_DEFAULT_N = {"train": 4000, "val": 500, "test": 2000}
DATA_SPEC_HELP = (
    "synth[:N[:SEED]][:vVERSION] (the built-in DefocusSynth benchmark; default seeds: train 0, val 2, "
    "evaluate 1; VERSION 1.0 or 2.0, default the generator's default), "
    "folder:PATH (PATH/real/**, PATH/fake/**), ff++:PATH[:SPLIT] (FaceForensics++ root; split train / val / "
    "test by role, --split or the suffix), cifake:PATH[:SPLIT] (CIFAKE root; train or test split)"
)
_KINDS = ("synth", "folder", "ff++", "cifake")
_SPLITS = ("train", "val", "test")


def parse_data_spec(spec: str) -> tuple[str, dict]:
    """Split a data specification into ``(kind, arguments)``; raises ``ValueError`` with the accepted forms.

    ``synth`` gives the keys ``n``, ``seed`` and ``version`` that the specification sets: a last field
    starting with ``v`` is the DefocusSynth generator version (``v2.0``; ``v2`` means ``2.0``).

    Examples
    --------
    >>> parse_data_spec("synth::7:v2")
    ('synth', {'seed': 7, 'version': '2.0'})
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"empty data specification; expected {DATA_SPEC_HELP}")
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind in ("ffpp", "faceforensics"):
        kind = "ff++"
    if kind not in _KINDS:
        raise ValueError(f"unknown data kind {kind!r} in {spec!r}; expected {DATA_SPEC_HELP}")
    if kind == "synth":
        return kind, _parse_synth(spec, rest)
    if not rest:
        raise ValueError(f"{kind} needs a path: {kind}:PATH")
    head, sep, tail = rest.rpartition(":")
    if kind != "folder" and sep and head and tail in _SPLITS:
        return kind, {"path": head, "split": tail}
    return kind, {"path": rest}


def _parse_synth(spec: str, rest: str) -> dict:
    from .synth import SYNTH_VERSIONS

    parts = rest.split(":") if rest else []
    out = {}
    if parts and parts[-1][:1] in ("v", "V"):
        version = parts.pop()[1:]
        version = version if "." in version else version + ".0"
        if version not in SYNTH_VERSIONS:
            raise ValueError(f"synth specification {spec!r}: version must be one of "
                             f"{', '.join('v' + v for v in SYNTH_VERSIONS)}")
        out["version"] = version
    if len(parts) > 2:
        raise ValueError(f"synth specification {spec!r} has too many fields: synth[:N[:SEED]][:vVERSION]")
    try:
        if parts and parts[0]:
            out["n"] = int(parts[0])
        if len(parts) == 2 and parts[1]:
            out["seed"] = int(parts[1])
    except ValueError:
        raise ValueError(f"synth specification {spec!r}: N and SEED must be integers") from None
    return {k: out[k] for k in ("n", "seed", "version") if k in out}


def dataset_from_spec(spec: str, *, size: int = 128, role: str = "train", split: str | None = None,
                      on_error: str = "raise"):
    """Build the data set a specification names.

    Parameters
    ----------
    spec : str
        See :data:`DATA_SPEC_HELP`.
    size : int
        Image size (square) the data set delivers.
    role : {"train", "val", "test"}
        Chooses the default DefocusSynth seed and size and the FF++ / CIFAKE split.
    split : str, optional
        Override the split of FF++ (train / val / test) or CIFAKE (train / test).
    on_error : {"raise", "skip"}
        Unreadable image files: raise (default) or skip and report (folder data sets).
    """
    kind, args = parse_data_spec(spec)
    split = split or args.get("split")
    if role not in SYNTH_DEFAULT_SEED:
        raise ValueError(f"role must be train, val or test, got {role!r}")
    if kind == "synth":
        from ..data.synth import DefocusSynth

        return DefocusSynth(args.get("n", SYNTH_DEFAULT_N[role]), size=size,
                            seed=args.get("seed", SYNTH_DEFAULT_SEED[role]), version=args.get("version"))
    from ..data import datasets as D

    if kind == "folder":
        return D.FolderDataset(args["path"], size=size, on_error=on_error)
    if kind == "ff++":
        return D.FaceForensicsDataset(args["path"], split=split or role, size=size, on_error=on_error)
    cifake_split = split or ("train" if role == "train" else "test")
    return D.CIFAKEDataset(args["path"], split=cifake_split, size=size, on_error=on_error)
