"""Contact sheet of DefocusSynth: every family of a few scenes with its true sigma map.

Run ``python examples/synth_contact_sheet.py [OUT.png]`` (default
``docs/img/synth_contact_sheet.png``). Rows are families, column pairs are scenes: the image
(the splice mask outlined in red) and its true sigma map, on one colour scale per scene.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

from defocus_xai.data.synth import FAMILIES, REAL, render_scene  # noqa: E402

SEEDS = (7, 21, 3, 12)
SIZE = 128


def contact_sheet(seeds=SEEDS, size=SIZE, jpeg_quality=90):
    """Return the matplotlib Figure of the contact sheet."""
    fams = (REAL,) + FAMILIES
    samples = {(s, f): render_scene(size=size, family=f, seed=s, jpeg_quality=jpeg_quality, return_camera=True)
               for s in seeds for f in fams}
    fig, axes = plt.subplots(len(fams), 2 * len(seeds), figsize=(2.0 * 2 * len(seeds), 2.05 * len(fams) + 0.6),
                             gridspec_kw={"wspace": 0.04, "hspace": 0.12})
    for j, seed in enumerate(seeds):
        vmax = max(float(samples[seed, f]["sigma"].max()) for f in fams)
        cam = samples[seed, REAL]["camera"]
        axes[0, 2 * j].set_title(f"scene {seed}\nf={cam.f * 1000:.0f} mm  f/{cam.N:.1f}  d_f={cam.d_f:.1f} m",
                                 fontsize=8)
        axes[0, 2 * j + 1].set_title("true sigma", fontsize=8)
        for i, fam in enumerate(fams):
            s = samples[seed, fam]
            ax = axes[i, 2 * j]
            ax.imshow(s["image"].permute(1, 2, 0).numpy(), interpolation="nearest")
            if s["mask"].any():
                ax.contour(s["mask"][0].numpy(), levels=[0.5], colors="red", linewidths=0.8)
            im = axes[i, 2 * j + 1].imshow(s["sigma"][0].numpy(), cmap="viridis", vmin=0, vmax=vmax,
                                           interpolation="nearest")
            if j == 0:
                ax.set_ylabel(fam.replace("_", "\n"), fontsize=9)
        cb = fig.colorbar(im, ax=list(axes[:, 2 * j:2 * j + 2].ravel()), orientation="horizontal",
                          fraction=0.025, pad=0.015, aspect=25)
        cb.locator = matplotlib.ticker.MaxNLocator(5)
        cb.update_ticks()
        cb.set_label("sigma (px)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"DefocusSynth: real and fake families of the same scenes ({size}x{size}, JPEG q{jpeg_quality}); "
                 "red: splice mask", fontsize=10, y=0.925)
    return fig


def main(out=None):
    out = out or os.path.join(os.path.dirname(__file__), "..", "docs", "img", "synth_contact_sheet.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig = contact_sheet()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print("wrote", os.path.abspath(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
