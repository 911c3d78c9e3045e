"""The PNG of one case's mask disagreement: the axial slice where the reference and candidate
label maps differ most, with a legend of the classes on it."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segbench.results.canvas import PlotError, figure, prepare_target, save

FAIL_COLOR = "#C44E52"
CT_WINDOW = (-200.0, 300.0)  # HU: soft tissue
MAX_LEGEND = 36  # classes named in the legend (the largest on the slice); the rest are counted


def disagreement_slice(reference: np.ndarray, candidate: np.ndarray) -> int:
    """The axial slice (index along the last axis, Z of an (X, Y, Z) RAS array) where the two
    label maps differ in the most voxels; the lowest such index on ties. Without any
    disagreement: the slice with the most reference foreground."""
    counts = np.count_nonzero(reference != candidate, axis=(0, 1))
    if counts.max(initial=0) > 0:
        return int(np.argmax(counts))
    return int(np.argmax(np.count_nonzero(reference, axis=(0, 1))))


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of an (X, Y, Z) RAS volume as an image in radiological view: anterior up,
    the patient's right on the viewer's left (rows = Y descending, columns = X descending)."""
    return volume[::-1, ::-1, z].T


def label_colors(n_labels: int) -> list[tuple[float, float, float, float]]:
    """One colour per label 1..n: matplotlib's tab10 / tab20 / tab20+tab20b+tab20c when they
    suffice, else hues spread by the golden ratio (neighbouring labels stay apart)."""
    import matplotlib

    if n_labels <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n_labels)]
    if n_labels <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n_labels)]
    if n_labels <= 60:
        maps = [matplotlib.colormaps[m] for m in ("tab20", "tab20b", "tab20c")]
        return [maps[i // 20](i % 20) for i in range(n_labels)]
    colors = []
    for i in range(n_labels):
        hue = (i * 0.618033988749895) % 1.0
        light = (0.45, 0.6, 0.35)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
        colors.append((r, g, b, 1.0))
    return colors


def _name(label: int, class_names: Mapping[str, str] | Sequence[str] | None) -> str:
    if isinstance(class_names, Mapping):
        return class_names.get(str(label), f"label {label}")
    if class_names is not None and 0 <= label < len(class_names):
        return f"{label} {class_names[label]}"
    return f"label {label}"


def _legend_labels(
    ref_img: np.ndarray, cand_img: np.ndarray, diff: np.ndarray
) -> tuple[list[int], set[int], int]:
    """The labels the legend names (those where the masks differ first, then the largest on
    the slice, at most :data:`MAX_LEGEND`, in label order), the differing ones, and how many
    labels on the slice are left out."""
    both = np.concatenate([ref_img.ravel(), cand_img.ravel()])
    present, counts = np.unique(both, return_counts=True)
    size = {int(lab): int(c) for lab, c in zip(present, counts, strict=True) if lab > 0}
    where = np.concatenate([ref_img[diff], cand_img[diff]])
    differing = {int(lab) for lab in np.unique(where) if lab > 0}
    ranked = sorted(size, key=lambda lab: (lab not in differing, -size[lab], lab))
    named = sorted(ranked[:MAX_LEGEND])
    return named, differing, len(size) - len(named)


def plot_disagreement(
    ct: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    path: str | Path,
    title: str,
    *,
    spacing: Sequence[float] | None = None,
    class_names: Mapping[str, str] | Sequence[str] | None = None,
) -> int:
    """Save one PNG with four panels of the axial slice where the two label maps disagree most:
    the CT (window -200..300 HU), the reference mask over it, the candidate mask over it, and
    the voxels whose labels differ; below them a legend of the classes on that slice (by name
    when ``class_names`` maps a label or is the card's list). Arrays are (X, Y, Z) in RAS, all
    of one shape; ``spacing`` (mm, optional) sets the pixel aspect. Returns the slice index
    along Z."""
    _check_volumes(ct, reference, candidate)
    path = prepare_target(path)
    z = disagreement_slice(reference, candidate)
    ct_img = _axial(np.asarray(ct, dtype=np.float32), z)
    ref_img = _axial(reference, z)
    cand_img = _axial(candidate, z)
    diff = ref_img != cand_img
    n_labels = int(max(reference.max(initial=0), candidate.max(initial=0), 1))
    colors = label_colors(n_labels)
    aspect = 1.0
    if spacing is not None and len(spacing) >= 2 and spacing[0] > 0:
        aspect = float(spacing[1]) / float(spacing[0])  # rows are Y, columns are X

    named, differing, more = _legend_labels(ref_img, cand_img, diff)
    legend_rows = -(-(len(named) + 1) // 6)

    panel = 3.2  # inches per panel; the height follows the slice's shape and pixel aspect
    rows_, cols_ = ct_img.shape
    height = min(max(panel * rows_ * aspect / cols_, 1.5), 8.0) + 0.9 + 0.22 * legend_rows
    fig = figure(4 * panel + 0.4, height)
    axes = fig.subplots(1, 4)
    _draw_panels(axes, ct_img, (ref_img, cand_img, diff), colors, aspect)
    _class_legend(fig, named, differing, more, colors, class_names)
    fig.suptitle(f"{title} - axial slice z={z} of {ct.shape[2]} (radiological view)", fontsize=10)
    save(fig, path)
    return z


def _check_volumes(ct: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> None:
    """Refuse volumes that are not 3D or not of one shape (a :class:`PlotError` that says
    which)."""
    arrays = {"ct": ct, "reference": reference, "candidate": candidate}
    for name, array in arrays.items():
        if np.ndim(array) != 3:
            raise PlotError(
                f"plot_disagreement: {name} has shape {np.shape(array)}, not 3D. Fix: pass the "
                "(X, Y, Z) volumes of one case"
            )
    if not ct.shape == reference.shape == candidate.shape:
        raise PlotError(
            f"plot_disagreement: shapes differ (ct {ct.shape}, reference {reference.shape}, "
            f"candidate {candidate.shape}). Fix: resample the masks to the CT grid first"
        )


def _draw_panels(
    axes: Any,
    ct_img: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    colors: list[tuple[float, float, float, float]],
    aspect: float,
) -> None:
    """The four panels: the CT slice, the reference and the candidate label maps over it
    (``masks[0]``, ``masks[1]``, one colour per label), and where they differ (``masks[2]``)."""
    from matplotlib.colors import ListedColormap

    ref_img, cand_img, diff = masks
    window = {"cmap": "gray", "vmin": CT_WINDOW[0], "vmax": CT_WINDOW[1], "aspect": aspect}
    overlay = {
        "cmap": ListedColormap(colors),
        "vmin": 0.5,
        "vmax": len(colors) + 0.5,
        "alpha": 0.55,
        "interpolation": "nearest",
        "aspect": aspect,
    }
    axes[0].imshow(ct_img, **window)
    axes[0].set_title(f"CT, window {CT_WINDOW[0]:g}..{CT_WINDOW[1]:g} HU", fontsize=9)
    for ax, mask, name in ((axes[1], ref_img, "reference"), (axes[2], cand_img, "candidate")):
        ax.imshow(ct_img, **window)
        ax.imshow(np.ma.masked_equal(mask, 0), **overlay)
        ax.set_title(f"{name} mask ({int(np.count_nonzero(mask))} fg voxels)", fontsize=9)
    axes[3].imshow(ct_img, **{**window, "alpha": 0.5})
    axes[3].imshow(
        np.ma.masked_equal(diff.astype(np.uint8), 0),
        cmap=ListedColormap([FAIL_COLOR]),
        vmin=0.5,
        vmax=1.5,
        interpolation="nearest",
        aspect=aspect,
    )
    axes[3].set_title(f"labels differ ({int(diff.sum())} voxels)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def _class_legend(
    fig: Any,
    named: list[int],
    differing: set[int],
    more: int,
    colors: list[tuple[float, float, float, float]],
    class_names: Mapping[str, str] | Sequence[str] | None,
) -> None:
    """The legend below the panels: the ``named`` classes (``differing`` ones marked), the
    colour of differing voxels, and how many smaller classes are left out (``more``)."""
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(
            color=colors[lab - 1],
            label=_name(lab, class_names) + (" (differs)" if lab in differing else ""),
        )
        for lab in named
    ]
    handles.append(Patch(color=FAIL_COLOR, label="labels differ"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(6, len(handles)),
        fontsize=7.5,
        frameon=False,
        title=f"classes on this slice (+{more} smaller not listed)" if more > 0 else None,
        title_fontsize=8,
    )
