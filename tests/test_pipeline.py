"""The analysis stages and ``paper_figures`` on a small store written on the fly (no model involved)."""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from defocus_xai import pipeline as pl

N = 16
SETTINGS = pl.PipelineSettings(n_boot=50, n_permutations=10, max_examples=1)


@pytest.fixture(scope="module")
def arrays():
    """A store's arrays: 8 sources, each with a real and a fake (two families), every optional key."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], N // 2).astype(np.int8)
    families = np.array(["real", "splice", "real", "no_dof"] * (N // 4))
    masks = np.zeros((N, 16, 16), np.uint8)
    masks[labels == 1, 4:9, 4:9] = 1
    return {"dmaps": rng.random((N, 16, 16)).astype(np.float32), "labels": labels,
            "source_ids": np.repeat([f"s{i}" for i in range(N // 2)], 2), "families": families,
            "defocus_shaps": rng.normal(size=(N, 16, 16)).astype(np.float32),
            "rgb_shaps": rng.normal(size=(N, 3, 32, 32)).astype(np.float32),
            "scores": rng.random(N).astype(np.float32), "features": rng.normal(size=(N, 8)).astype(np.float32),
            "gt_masks": masks, "paths": np.array([f"synth:1:{i}" for i in range(N)])}


@pytest.mark.parametrize("stage, figures", [
    (pl.stage_masks, ["mask_example_0", "activation_curve"]),
    (pl.stage_variance, ["variance_example_0", "variance_distributions"]),
    (pl.stage_embedding, ["embedding"]),
    (pl.stage_alignment, ["alignment_example_0", "alignment_comparison"]),
    (pl.stage_attributions, ["attribution_0"]),
    (pl.stage_localization, ["localization", "localization_example"]),
])
def test_every_stage_returns_one_result_type(arrays, stage, figures):
    result = stage(arrays, SETTINGS)
    assert isinstance(result, pl.StageResult)
    assert list(result.figures) == figures and set(result.captions) == set(figures)
    json.dumps(result.to_dict())
    result.close()


def test_examples_name_their_samples(arrays):
    result = pl.stage_masks(arrays, SETTINGS)
    title = result.figures["mask_example_0"].get_suptitle()
    result.close()
    assert re.match(r"fake #\d+, .*\sand its real #\d+", title)  # named in the panels' order: fake, then real
    caption = result.captions["mask_example_0"]
    assert re.search(r"fake #\d+, (splice|no_dof), source s\d, score 0\.\d\d and its real #\d+, real, source s\d",
                     caption)
    f, r = (int(x) for x in re.findall(r"#(\d+)", caption)[:2])
    assert arrays["source_ids"][f] == arrays["source_ids"][r]  # a fake is shown beside its own real


def test_variance_uses_the_source_ids_as_groups(arrays):
    with_groups = pl.stage_variance(arrays, SETTINGS)
    with pytest.warns(UserWarning, match="list index"):
        without = pl.stage_variance({k: v for k, v in arrays.items() if k != "source_ids"}, SETTINGS)
    with_groups.close()
    without.close()
    assert with_groups.numbers["unit"] == "group"
    assert without.numbers["unit"] == "image"


def test_store_pairs_falls_back_to_frames_and_warns_without_ids(arrays):
    two_frames = dict(arrays, source_ids=np.repeat(["a", "b"], N // 2),
                      paths=np.array([f"v/{i // 2:04d}.png" for i in range(N)]))
    pairs, note = pl.store_pairs(two_frames)
    assert len(pairs) == N // 2 and "frame" in note
    with pytest.warns(UserWarning, match="list index"):
        pl.store_pairs({k: v for k, v in arrays.items() if k != "source_ids"})


def _reference_files(tmp_path, with_paths):
    """The reference notebooks' pair of files (object arrays), optionally with FF++-layout sample paths."""
    rng = np.random.default_rng(1)
    ff = "/ff"
    videos, frames = ["000", "001", "002", "003"], ["0000", "0001"]
    real_paths = [f"{ff}/original_sequences/youtube/c23/frames/{v}/{f}.png" for v in videos for f in frames]
    fake_paths = [f"{ff}/manipulated_sequences/FaceSwap/c23/frames/{v}_9{v[1:]}/{f}.png"
                  for v in videos[::-1] for f in frames]

    def obj(items):
        a = np.empty(len(items), dtype=object)
        for i, item in enumerate(items):
            a[i] = item
        return a

    files = (tmp_path / "shap_data_real.npz", tmp_path / "shap_data_fake_FaceSwap.npz")
    for path, paths in zip(files, (real_paths, fake_paths)):
        arrays = {k: obj([rng.random((16, 16)) for _ in paths]) for k in ("dmaps", "defocus_shaps", "rgb_shaps")}
        np.savez(path, **arrays, **({"paths": obj(paths)} if with_paths else {}))
    return files


def test_reference_pair_groups_flow_to_pairing_and_stages(tmp_path):
    files = _reference_files(tmp_path, with_paths=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays, _ = pl.open_arrays(files, allow_legacy_pickle=True)
        pairs, note = pl.store_pairs(arrays)
    sid, paths = arrays["source_ids"], arrays["paths"]
    assert sorted(set(sid[arrays["labels"] == 0])) == ["000", "001", "002", "003"]
    assert len(pairs) == 8 and "frame" in note
    for f, r in pairs:  # a fake beside the same frame of its own target video
        assert sid[f] == sid[r] and paths[f].rsplit("/", 1)[1] == paths[r].rsplit("/", 1)[1]
        assert paths[f].split("/")[-2].split("_")[0] == paths[r].split("/")[-2]
    result = pl.stage_variance(arrays, SETTINGS)
    result.close()
    assert result.numbers["unit"] == "group"


def test_reference_pair_without_paths_warns_once(tmp_path):
    files = _reference_files(tmp_path, with_paths=False)
    with pytest.warns(UserWarning, match="carry no video ids") as caught:
        arrays, _ = pl.open_arrays(files, allow_legacy_pickle=True)
    assert sum("video ids" in str(w.message) for w in caught) == 1 and "source_ids" not in arrays
    arrays, _ = pl.open_arrays(files, allow_legacy_pickle=True, groups=np.repeat(["a", "b", "b", "a"], 4))
    assert arrays["source_ids"].tolist()[:2] == ["a", "a"]
    with pytest.raises(ValueError, match="groups"):
        pl.open_arrays(arrays, groups=arrays["source_ids"])


def test_settings_are_validated():
    with pytest.raises(ValueError, match="embed_method"):
        pl.PipelineSettings(embed_method="mds")
    assert pl.PipelineSettings().replace(window=5).to_dict()["window"] == 5


@pytest.mark.parametrize("kind", ["folder", "npz", "pair"])
def test_paper_figures_reads_every_store_form(arrays, tmp_path, kind):
    from defocus_xai.store import shard_name, write_index, write_shard

    if kind == "folder":
        source = tmp_path / "store"
        source.mkdir()
        write_shard(source / shard_name(0, 1, 0), arrays)
        write_index(source, [{"file": shard_name(0, 1, 0), "n": N}], complete=True)
    elif kind == "npz":
        source = tmp_path / "one.npz"
        np.savez(source, **arrays)
    else:
        real, fake = arrays["labels"] == 0, arrays["labels"] == 1
        source = (tmp_path / "real.npz", tmp_path / "fake.npz")
        np.savez(source[0], **{k: v[real] for k, v in arrays.items()})
        np.savez(source[1], **{k: v[fake] for k, v in arrays.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = pl.paper_figures(source, tmp_path / "figs", settings=SETTINGS, formats=("png",), dpi=40)
    assert paths[-1].name == "figures.md" and all(p.is_file() for p in paths)
    index = paths[-1].read_text()
    for stem in ("mask_example_0", "activation_curve", "variance_distributions", "alignment_comparison",
                 "localization"):
        assert f"![{stem}]({stem}.png)" in index
    assert re.search(r"#\d+, (splice|no_dof), source s\d", index)


def _attribution_clims(fig):
    """Colour limits of the attribution overlays (RdBu_r images) of a figure."""
    return [im.get_clim() for ax in fig.axes for im in ax.images if im.get_cmap().name == "RdBu_r"]


@pytest.mark.parametrize("stage, stem", [(pl.stage_attributions, "attribution_0"),
                                         (pl.stage_localization, "localization_example")])
def test_compared_attribution_panels_share_one_symmetric_limit_and_one_colour_bar(arrays, stage, stem):
    result = stage(arrays, SETTINGS)
    fig = result.figures[stem]
    clims = _attribution_clims(fig)
    assert len(clims) == 2 and clims[0] == clims[1] and np.isclose(clims[0][0], -clims[0][1])
    colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colour_bars) == 1
    assert re.search(r"#\d+, (splice|no_dof), source s\d", fig.get_suptitle())
    result.close()


def test_alignment_reports_every_control_and_examples_share_axes(arrays):
    result = pl.stage_alignment(arrays, SETTINGS)
    for model in ("defocus", "rgb"):
        x = result.numbers[model]
        assert set(x["controls"]) == {"permutation", "map_value", "uniform"}
        assert isinstance(x["beats_all_controls"], bool)
    caption = result.captions["alignment_comparison"]
    for word in ("permutation baseline", "map-value control", "uniform control", "n = 8 pairs",
                 "attribution reference"):
        assert word in caption
    legend = [t.get_text() for leg in result.figures["alignment_comparison"].legends for t in leg.get_texts()]
    assert "permutation baseline" in legend and "map-value control" in legend
    a, b = result.figures["alignment_example_0"].axes[:2]
    assert a.get_xlim() == b.get_xlim() and a.get_ylim() == b.get_ylim()
    result.close()


def test_variance_headline_is_per_source_and_embedding_cv_is_grouped(arrays):
    var = pl.stage_variance(arrays, SETTINGS)
    emb = pl.stage_embedding(arrays, SETTINGS)
    var.close()
    emb.close()
    assert "per source" in var.numbers["headline"] and "frame-level" in var.numbers["headline"]
    assert "paired Wilcoxon" in var.captions["variance_distributions"]
    assert emb.numbers["detector"]["cv"] == "group" and "grouped CV" in emb.captions["embedding"]
    assert "perplexity" in emb.captions["embedding"] and f"seed {SETTINGS.embed_seed}" in emb.captions["embedding"]


def test_reference_is_read_from_the_store_meta(arrays):
    meta = {"attributions": {"defocus_shaps": {"background": "10 real training maps"}}}
    with_meta = dict(arrays, meta=np.asarray(json.dumps(meta)))
    assert pl.attribution_reference(with_meta) == "10 real training maps"
    result = pl.stage_attributions(with_meta, SETTINGS)
    result.close()
    assert "attribution reference: 10 real training maps" in result.captions["attribution_0"]


def test_paper_figures_survives_a_degenerate_pair(arrays, tmp_path):
    """Two identical maps (a pair whose maps did not change) never abort the figure set."""
    degenerate = {k: v.copy() for k, v in arrays.items()}
    degenerate["dmaps"][1] = degenerate["dmaps"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        everything = pl.paper_figures(degenerate, tmp_path / "figs", settings=SETTINGS.replace(max_examples=8),
                                      formats=("png",), dpi=30)
    stems = {p.stem for p in everything if p.suffix == ".png"}
    expected = {"activation_curve", "variance_distributions", "embedding", "alignment_comparison", "localization",
                "localization_example"} | {f"{s}_{k}" for s in ("mask_example", "variance_example",
                                                                 "alignment_example", "attribution") for k in range(7)}
    assert stems == expected  # every figure; the degenerate pair is never drawn as an example
    index = (tmp_path / "figs" / "figures.md").read_text()
    assert "1 degenerate skipped: rows [1]" in index
    forced = pl.stage_alignment(degenerate, SETTINGS, examples=[0])  # asked for explicitly: drawn, not scored
    forced.close()
    assert "not scored" in forced.captions["alignment_example_0"]


@pytest.mark.parametrize("curve, diffs, expected", [
    ([3.0, 2.0, 1.0, 0.0], (-0.8, 0.9), None),
    ([2.0, 2.5, 1.0, 0.0], (-0.8, 0.9), "raises the logit"),
    ([2.0, 0.5, 1.0, 1.9], (-0.8, 0.9), "dips"),
    ([2.0, 2.05, 1.98, 2.0], (-0.8, 0.9), "ends where it starts"),
    ([3.0, 2.0, 1.0, 0.0], (-0.02, 0.03), "within"),
])
def test_faithfulness_caveat(curve, diffs, expected):
    from defocus_xai.pipeline.model_stages import faithfulness_caveat

    summary = pd.DataFrame({"metric": ["deletion_vs_random", "insertion_vs_random"], "mean": list(diffs)})
    caveat = faithfulness_caveat(curve, summary)
    assert caveat is None if expected is None else re.search(expected, caveat)
