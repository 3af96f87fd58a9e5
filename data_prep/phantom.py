"""A synthetic phantom cohort in BraTS 2019-2021 NIfTI layout, for the demo and the tests.

    python -m data_prep.phantom --output_dir=DIR [--cases=12] [--size=64] [--slices=40] [--seed=0]

Each case is a skull-stripped, brain-like ellipsoid with white matter, grey matter and
ventricles (CSF), low-frequency bias and texture, in four modalities (flair, t1, t1ce, t2),
and usually one glioma-like lesion with BraTS labels: necrotic core 1, edema 2, enhancing rim 4;
every head also has CSF around the cortex and vessels as bright as a lesion, so that tumor-free
and tumor-bearing heads normalise alike.
Every fifth case is tumor-free. The same seed gives the same files.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ssagan_tf import io as durable

# Mean intensity of each tissue in each modality (arbitrary scanner units), chosen so the lesion
# looks as it does on real MRI: enhancing rim bright on T1c, edema bright on FLAIR and T2.
# Every head, tumor-free or not, also has vessels (a midline venous sinus and the choroid plexus)
# as bright as the brightest lesion tissue of each modality, as T1c shows enhancing veins and
# plexus: the converter clips each volume at its 99.5th intensity percentile, and without them a
# tumor-free head's percentile would fall on white matter instead of on a lesion, so its healthy
# tissue would normalise far brighter than a tumor-bearing head's (a shortcut for any classifier).
TISSUES = ("background", "csf", "grey", "white", "necrosis", "edema", "enhancing", "vessel")
CONTRAST = {
    "t1":    (0, 300, 550, 800, 250, 450, 600, 800),
    "t1ce":  (0, 300, 600, 800, 200, 500, 1600, 1600),
    "t2":    (0, 1500, 900, 600, 1400, 1200, 1000, 1500),
    "flair": (0, 150, 700, 550, 900, 1300, 1000, 1700),
}
MODALITIES = tuple(CONTRAST)
BRATS_LABEL = {"necrosis": 1, "edema": 2, "enhancing": 4}


def _smooth_noise(rng, shape, sigma):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (np.abs(field).max() + 1e-8)


def _ellipsoid(shape, center, radii):
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return ((zz - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2 + \
        ((xx - center[2]) / radii[2]) ** 2


def tissue_map(rng, shape, with_tumor: bool) -> np.ndarray:
    """Integer tissue map (indices into TISSUES) of one phantom head."""
    z, y, x = shape
    center = np.array([z / 2, y / 2, x / 2]) + rng.uniform(-0.03, 0.03, 3) * np.array(shape)
    radii = np.array([z * 0.45, y * 0.40, x * 0.34]) * rng.uniform(0.92, 1.05, 3)
    wobble = 0.06 * _smooth_noise(rng, shape, sigma=max(shape) / 10)
    r = _ellipsoid(shape, center, radii) + wobble
    tissues = np.zeros(shape, np.uint8)
    tissues[r <= 1.0] = TISSUES.index("grey")
    tissues[(r > 0.95) & (r <= 1.0)] = TISSUES.index("csf")   # the CSF around the cortex
    tissues[r <= 0.72 + 0.08 * _smooth_noise(rng, shape, sigma=max(shape) / 16)] = TISSUES.index("white")
    for side in (-1, 1):  # two ventricles either side of the midline
        v_center = center + np.array([0, -0.05 * y, side * 0.08 * x])
        ventricle = _ellipsoid(shape, v_center, radii * np.array([0.35, 0.28, 0.09]))
        tissues[(ventricle <= 1.0) & (r <= 1.0)] = TISSUES.index("csf")
        plexus = _ellipsoid(shape, v_center + np.array([0, 0.04 * y, 0]), radii * np.array([0.25, 0.10, 0.05]))
        tissues[(plexus <= 1.0) & (r <= 1.0)] = TISSUES.index("vessel")
    _add_vessels(tissues, r, center, shape)
    if with_tumor:
        _add_lesion(rng, tissues, r, shape)
    return tissues


def _add_vessels(tissues, r, center, shape):
    """The superior sagittal sinus: a strip along the top of the brain's midline in every slice."""
    _, y, x = shape
    yy, xx = np.meshgrid(np.arange(y), np.arange(x), indexing="ij")
    midline = (np.abs(xx - center[2]) <= max(1.0, 0.04 * x)) & (yy < center[1])
    tissues[(r > 0.75) & (r <= 1.0) & midline[None]] = TISSUES.index("vessel")


def _add_lesion(rng, tissues, r, shape):
    """A glioma-like lesion inside the brain: edema around an enhancing rim around necrosis."""
    z, y, x = shape
    inside = np.argwhere((r < 0.45) & (np.abs(np.arange(z) - z / 2)[:, None, None] < z * 0.25))
    lz, ly, lx = inside[rng.integers(len(inside))]
    size = rng.uniform(0.10, 0.18) * min(y, x)
    radii = np.array([size * rng.uniform(0.6, 0.9) * z / y, size, size * rng.uniform(0.8, 1.2)])
    d = _ellipsoid(shape, (lz, ly, lx), radii) + 0.15 * _smooth_noise(rng, shape, sigma=size / 3)
    brain = r <= 1.0
    tissues[(d <= 2.2) & brain] = TISSUES.index("edema")
    tissues[(d <= 1.0) & brain] = TISSUES.index("enhancing")
    tissues[(d <= 0.45) & brain] = TISSUES.index("necrosis")


def render(rng, tissues: np.ndarray, modality: str) -> np.ndarray:
    """Intensities of one modality: tissue means, smooth bias field, texture and noise."""
    means = np.asarray(CONTRAST[modality], np.float32)
    image = means[tissues]
    brain = tissues > 0
    bias = 1.0 + 0.12 * _smooth_noise(rng, tissues.shape, sigma=max(tissues.shape) / 4)
    texture = 0.06 * _smooth_noise(rng, tissues.shape, sigma=1.0)
    noise = rng.normal(0.0, 0.03, tissues.shape)
    image = image * (bias + texture + noise)
    image = ndimage.gaussian_filter(image, 0.6)
    image[~brain] = 0.0  # skull-stripped: exact zero background, as in BraTS
    return np.clip(image, 0, None).astype(np.float32)


def segmentation(tissues: np.ndarray) -> np.ndarray:
    seg = np.zeros(tissues.shape, np.uint8)
    for name, label in BRATS_LABEL.items():
        seg[tissues == TISSUES.index(name)] = label
    return seg


def _write(array: np.ndarray, path: str) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((0.0, 0.0, 0.0))
    with durable.atomic_output(path, suffix=".nii.gz") as temp:
        sitk.WriteImage(image, temp, useCompression=True)


def write_case(output_dir: str, index: int, size: int, slices: int, seed: int) -> str:
    """Write one case folder `Phantom_<index>` with BraTS file names; returns the folder."""
    rng = np.random.default_rng([seed, index])
    case = f"Phantom_{index:03d}"
    folder = os.path.join(output_dir, case)
    os.makedirs(folder, exist_ok=True)
    tissues = tissue_map(rng, (slices, size, size), with_tumor=index % 5 != 4)
    for modality in MODALITIES:
        _write(render(rng, tissues, modality), os.path.join(folder, f"{case}_{modality}.nii.gz"))
    _write(segmentation(tissues), os.path.join(folder, f"{case}_seg.nii.gz"))
    return folder


def write_cohort(output_dir: str, cases: int = 12, size: int = 64, slices: int = 40, seed: int = 0) -> list:
    if cases < 1 or size < 16 or slices < 4:
        raise ValueError(f"need cases >= 1, size >= 16, slices >= 4; got {cases}, {size}, {slices}")
    os.makedirs(output_dir, exist_ok=True)
    return [write_case(output_dir, i, size, slices, seed) for i in range(cases)]


def main(argv=None) -> int:
    from absl import app, flags

    from ssagan_tf import cli

    flags.DEFINE_string("output_dir", None, "Folder to write the cohort into (one folder per case).")
    flags.DEFINE_integer("cases", 12, "Number of cases; every fifth is tumor-free.")
    flags.DEFINE_integer("size", 64, "In-plane size of each volume (voxels).")
    flags.DEFINE_integer("slices", 40, "Axial slices per volume.")
    flags.DEFINE_integer("seed", 0, "Seed; the same seed writes the same cohort.")

    args = list(sys.argv if argv is None else argv)
    if cli.answer_help(args, __doc__, sys.modules[__name__]):
        return 0

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        f = flags.FLAGS
        if not f.output_dir:
            print("phantom: --output_dir is required", file=sys.stderr)
            return 2
        try:
            folders = write_cohort(f.output_dir, f.cases, f.size, f.slices, f.seed)
        except ValueError as err:
            print(f"phantom: {err}", file=sys.stderr)
            return 2
        print(f"wrote {len(folders)} phantom cases ({f.size}x{f.size}x{f.slices}) to {f.output_dir}")
        return 0

    try:
        app.run(lambda a: sys.exit(run(a)), argv=argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
