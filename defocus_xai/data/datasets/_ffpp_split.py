"""The FaceForensics++ split policy: the official split files (lists of video-id pairs) or a 70/10/20 cut.

docs/data.md ("Split policy") describes it; :class:`~defocus_xai.data.FaceForensicsDataset` uses it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

SPLITS = ("train", "val", "test")


def _default_split_of(ids: Sequence[str]) -> dict[str, str]:
    """70/10/20 split of sorted ids: first floor(0.7 n) train, up to floor(0.8 n) val, the rest test."""
    ids = sorted(ids)
    n = len(ids)
    n_train = int(math.floor(0.7 * n + 1e-9))
    n_trval = int(math.floor(0.8 * n + 1e-9))
    out = {}
    for i, vid in enumerate(ids):
        out[vid] = "train" if i < n_train else ("val" if i < n_trval else "test")
    return out


def _read_split_files(split_files) -> dict[str, list[tuple[str, str]]]:
    """Official FF++ split lists -> {split: [(a, b), ...]}; accepts a folder or a mapping split -> file/list."""
    if isinstance(split_files, (str, os.PathLike)):
        folder = Path(split_files)
        if not folder.is_dir():
            raise ValueError(f"split_files {str(folder)!r} is not a folder with train/val/test.json")
        mapping = {s: folder / f"{s}.json" for s in SPLITS if (folder / f"{s}.json").is_file()}
        if not mapping:
            raise ValueError(f"split_files folder {str(folder)!r} holds none of train.json, val.json, test.json")
    elif isinstance(split_files, Mapping):
        mapping = dict(split_files)
    else:
        raise TypeError(f"split_files must be a folder path or a dict split -> file or list, "
                        f"got {type(split_files).__name__}")
    out: dict[str, list[tuple[str, str]]] = {}
    for split, src in mapping.items():
        if split not in SPLITS:
            raise ValueError(f"split_files key {split!r} is not one of {SPLITS}")
        where = "the list given"
        if isinstance(src, (str, os.PathLike)):
            where = repr(os.fspath(src))
            try:
                with open(src, encoding="utf-8") as fh:
                    src = json.load(fh)
            except FileNotFoundError:
                raise ValueError(f"split file {where} for {split!r} not found") from None
            except json.JSONDecodeError as exc:
                raise ValueError(f"split file {where} is not valid JSON: {exc}") from None
        pairs = []
        for entry in src:
            if isinstance(entry, str) or len(entry) != 2:
                raise ValueError(f"split file {where}: each entry must be a [target, source] pair, got {entry!r}")
            pairs.append((str(entry[0]), str(entry[1])))
        out[split] = pairs
    seen: dict[str, str] = {}
    for split, pairs in out.items():
        for vid in {v for pair in pairs for v in pair}:
            if vid in seen and seen[vid] != split:
                raise ValueError(f"split files put video {vid!r} in both {seen[vid]!r} and {split!r}")
            seen[vid] = split
    return out


def split_policy(real_ids: list, split_files, split: str | None):
    """``(real video id -> split, fake_split(target, donor) -> (split or None, reason or None))``."""
    if split_files is None:
        real_split = _default_split_of(real_ids)

        def fake_split(target, donor):
            s = real_split.get(target)
            return s, (None if s else f"target video {target!r} has no real folder to take its split from")

        return real_split, fake_split
    lists = _read_split_files(split_files)
    if split is not None and split not in lists:
        raise ValueError(f"split {split!r} requested but split_files only give {sorted(lists)}")
    real_split = {v: s for s, pairs in lists.items() for pair in pairs for v in pair}
    pair_split = {}
    for s, pairs in lists.items():
        for a, b in pairs:
            pair_split[(a, b)] = s
            pair_split[(b, a)] = s

    def fake_split(target, donor):
        s = pair_split.get((target, donor))
        return s, (None if s else "pair not listed in any split file")

    return real_split, fake_split
