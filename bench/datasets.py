"""Offline image datasets built from data that pip packages ship (no download).

* ``digits``: scikit-learn's 1,797 handwritten digits, 8x8 grayscale scans, 10 classes
  (automl's demo set).
* ``textures``: 1,200 crops (32 px, grayscale; low resolution) of ten grayscale photos
  scikit-image ships (brick, grass, gravel, camera, cell, coins, moon, page, text, clock).
* ``photos``: 1,000 crops (96 px, colour) of ten real photos that scikit-image and
  scikit-learn ship (astronaut, coffee, chelsea, rocket, Hubble deep field,
  immunohistochemistry, retina, motorcycle, china, flower).
* ``tiny_photos``: 1,000 other crops of the same ten photos at 32 px (low resolution, colour).
* ``lfw``: scikit-image's ``lfw_subset()``, 200 real 25x25 grayscale photos, faces vs
  non-faces (too small to rank methods: 30 test images; not in the default bench).

Beyond one class per image (issue 18; ``TASK_DATASETS``, each ``(x, targets, names, task)``):

* ``rotation`` (regression): 1,000 crops (64 px, colour; 45-65 % of the shorter side) of the
  seven ``photos`` sources that have an upright (astronaut, coffee, chelsea, rocket,
  motorcycle, china, flower), each rotated by an angle drawn uniformly in [-30, 30] degrees;
  the target is the angle. The crop is cut from the centre of a rotated window 1.5x its
  side, so no corner is blank.
* ``count`` (regression): 600 images (32 px) of 0-7 handwritten digits (scikit-learn's scans,
  7-10 px, each at its own brightness of 50-100 %) pasted without overlap on a 48 px crop of
  a ``textures`` photo (grass, gravel, moon, cell) darkened by a random gain of 0.2-0.6, so
  that the total brightness is a poor proxy of the count; the target is the number of digits.
* ``mosaic_tags`` (multi-label): 600 2x2 mosaics (64 px, colour) whose four 32 px cells are
  crops of the ``photos`` sources: each cell is, with probability 1/2, a crop of one of the
  K=6 tagged sources (astronaut, coffee, chelsea, rocket, hubble, ihc, drawn uniformly), else
  of one of the four untagged ones (retina, motorcycle, china, flower); the tags are the
  tagged sources present (0-4 per image, about 1.8 on average).
* ``tiny_photos_imbalanced`` (classification): ``tiny_photos`` with 600 crops per class, of
  which class 0 (astronaut) keeps 5 % (30), the others all (5,430 images). Astronaut is the
  class a frozen EfficientNet-Lite0 (224 px) + logistic head recognised least when rare
  (recall 0.63 with 20 training images, 0.81 with balanced class weights). On ``textures``
  the same head kept every rare class at recall 1.0 (camera, brick), which leaves
  imbalance handling nothing to show.

Every set is drawn from a generator seeded by ``seed``: the same call gives the same arrays.
``write_table(x, targets, names, task, root)`` writes one as PNGs plus a ``labels.csv``
(what a user points ``automl search --data labels.csv`` at).

* ``scale_folder(root, n)``: a folder of n synthetic 400x300 JPEGs in 10 class sub-folders
  (4:3 crops of the ``photos`` sources, colour-jittered and noised; written in parallel
  processes, resumable), for ``bench/scale.py``: see the section below.

The class of a crop is its source photo. Crops are random squares of 10-25 % (textures
10-20 %) of the photo's shorter side, randomly flipped, so a model must recognise texture,
colour and object parts, not memorise one view.

    python -m bench.datasets   # prints each set's shape and class counts
"""

from __future__ import annotations

import numpy as np


def digits():
    from automl.data.sources import load_demo

    x, y, names, _ = load_demo()
    return x, y, names


def lfw():
    from skimage import data

    x = (data.lfw_subset() * 255).round().astype(np.uint8)
    x = np.repeat(x[..., None], 3, axis=-1)
    return x, np.repeat([0, 1], 100), ["face", "not_face"]


def _photos():
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "hubble": data.hubble_deep_field(),
        "ihc": data.immunohistochemistry(),
        "retina": data.retina(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    sk = load_sample_images()
    for name, img in zip(sk.filenames, sk.images):
        out[name.split("/")[-1].split(".")[0]] = img
    return out


def _gray_photos():
    from skimage import data

    names = ("brick", "grass", "gravel", "camera", "cell", "coins", "moon", "page", "text", "clock")
    return {n: getattr(data, n)() for n in names}


def _crops(srcs, per_class, size, lo, hi, seed):
    """``per_class`` random square crops of each source, ``lo``-``hi`` of its shorter side."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, img in enumerate(srcs.values()):
        h, w = img.shape[:2]
        for _ in range(per_class):
            side = int(rng.uniform(lo, hi) * min(h, w))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = img[top : top + side, left : left + side]
            if crop.ndim == 3:
                crop = crop[..., :3]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR)
            crop = np.asarray(crop, np.uint8)
            xs.append(crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=-1))
            ys.append(c)
    return np.stack(xs), np.asarray(ys), list(srcs)


def photos(per_class: int = 100, size: int = 96, seed: int = 0):
    return _crops(_photos(), per_class, size, 0.1, 0.25, seed)


def textures(per_class: int = 120, size: int = 32, seed: int = 0):
    return _crops(_gray_photos(), per_class, size, 0.1, 0.2, seed)


def tiny_photos(per_class: int = 100, size: int = 32, seed: int = 1):
    return _crops(_photos(), per_class, size, 0.1, 0.25, seed)


DATASETS = {
    "digits": digits,
    "textures": textures,
    "photos": photos,
    "tiny_photos": tiny_photos,
    "lfw": lfw,
}
DEFAULT = ("digits", "textures", "photos", "tiny_photos")


# --- sets for regression, multi-label and imbalance (issue 18) ---------------------------


# Photos with an upright: a sky, a horizon, a building, a face (not the retina or the Hubble
# field, which look the same at any angle).
ROTATION_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower")


def rotation(n: int = 1000, size: int = 64, seed: int = 0, max_angle: float = 30.0):
    """(x, angles in degrees (n,) float64, ["angle"], "regression"); see the module docstring."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _photos()
    srcs = [Image.fromarray(np.ascontiguousarray(photos[k][..., :3])) for k in ROTATION_SOURCES]
    xs, ys = [], []
    for i in range(n):
        src = srcs[i % len(srcs)]
        w, h = src.size
        side = int(rng.uniform(0.45, 0.65) * min(w, h))
        big = int(side * 1.5)
        left, top = rng.integers(0, w - big + 1), rng.integers(0, h - big + 1)
        window = src.crop((left, top, left + big, top + big))
        angle = float(rng.uniform(-max_angle, max_angle))
        turned = window.rotate(angle, resample=Image.BILINEAR)
        off = (big - side) // 2
        crop = turned.crop((off, off, off + side, off + side)).resize((size, size), Image.BILINEAR)
        xs.append(np.asarray(crop, np.uint8))
        ys.append(angle)
    return np.stack(xs), np.asarray(ys), ["angle"], "regression"


def count(n: int = 600, size: int = 32, seed: int = 0, most: int = 7):
    """(x, digit counts (n,) float64, ["count"], "regression"); see the module docstring."""
    from PIL import Image
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    glyphs = load_digits().images / 16.0  # (1797, 8, 8) in [0, 1]
    backgrounds = [_gray_photos()[k] for k in ("grass", "gravel", "moon", "cell")]
    canvas, cell = 48, 10
    slots = [(r * 12 + 1, c * 12 + 1) for r in range(4) for c in range(4)]  # 16 places, no overlap
    xs, ys = [], []
    for _ in range(n):
        bg = backgrounds[rng.integers(len(backgrounds))]
        h, w = bg.shape
        top, left = rng.integers(0, h - canvas + 1), rng.integers(0, w - canvas + 1)
        img = bg[top : top + canvas, left : left + canvas].astype(np.float64)
        img = img * rng.uniform(0.2, 0.6)  # background gain: brightness says little of the count
        k = int(rng.integers(0, most + 1))
        for slot in rng.choice(len(slots), size=k, replace=False):
            g = glyphs[rng.integers(len(glyphs))]
            side = int(rng.integers(7, cell + 1))  # 7-10 px digits, each its own brightness
            g = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((side, side))) / 255
            r, c = slots[slot]
            r, c = r + rng.integers(0, cell - side + 2), c + rng.integers(0, cell - side + 2)
            patch = img[r : r + side, c : c + side]
            img[r : r + side, c : c + side] = np.maximum(patch, g * 255 * rng.uniform(0.5, 1.0))
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((size, size))
        xs.append(np.repeat(np.asarray(im, np.uint8)[..., None], 3, axis=-1))
        ys.append(float(k))
    return np.stack(xs), np.asarray(ys), ["count"], "regression"


MOSAIC_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "hubble", "ihc")


def mosaic_tags(n: int = 600, size: int = 64, seed: int = 0):
    """(x, 0/1 tags (n, 6) uint8, source names, "multilabel"); see the module docstring."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _photos()
    srcs = [photos[k][..., :3] for k in MOSAIC_SOURCES]
    others = [img[..., :3] for k, img in photos.items() if k not in MOSAIC_SOURCES]
    half = size // 2
    xs, ys = [], []
    for _ in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        tags = np.zeros(len(srcs), np.uint8)
        for cell in range(4):
            tagged = rng.random() < 0.5
            j = int(rng.integers(len(srcs) if tagged else len(others)))
            src = srcs[j] if tagged else others[j]
            h, w = src.shape[:2]
            side = int(rng.uniform(0.1, 0.25) * min(h, w))
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(np.ascontiguousarray(src[top : top + side, left : left + side]))
            r, c = divmod(cell, 2)
            img[r * half : (r + 1) * half, c * half : (c + 1) * half] = np.asarray(
                crop.resize((half, half), Image.BILINEAR), np.uint8
            )
            if tagged:
                tags[j] = 1
        xs.append(img)
        ys.append(tags)
    return np.stack(xs), np.stack(ys), list(MOSAIC_SOURCES), "multilabel"


def imbalanced(
    base: str = "textures",
    minority: int = 0,
    fraction: float = 0.05,
    seed: int = 0,
    per_class: int = 600,
):
    """(x, y, names, "classification"): ``base`` (``per_class`` per class) with class
    ``minority`` cut to ``fraction`` of the others' count (its first images, in order)."""
    x, y, names = DATASETS[base](per_class=per_class, seed=seed)  # type: ignore[call-arg]
    keep_minority = np.flatnonzero(y == minority)[: max(1, int(round(fraction * per_class)))]
    keep = np.sort(np.concatenate([np.flatnonzero(y != minority), keep_minority]))
    return x[keep], y[keep], names, "classification"


def tiny_photos_imbalanced(seed: int = 1):
    return imbalanced("tiny_photos", 0, 0.05, seed)


TASK_DATASETS = {
    "rotation": rotation,
    "count": count,
    "mosaic_tags": mosaic_tags,
    "tiny_photos_imbalanced": tiny_photos_imbalanced,
}


def write_table(x, targets, names, task: str, root):
    """The images as PNGs under ``root/images/`` plus ``root/labels.csv`` (``path`` relative to
    the CSV, then the targets: ``label`` for classification, one column per target for
    regression, ``tags`` joined with ``;`` for multi-label). Returns the CSV's path."""
    import csv
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    targets = np.asarray(targets)
    header = {"classification": ["label"], "multilabel": ["tags"]}.get(task, list(names))
    with open(root / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", *header])
        for i, img in enumerate(x):
            rel = f"images/{i:05d}.png"
            Image.fromarray(img).save(root / rel)
            if task == "classification":
                row = [names[int(targets[i])]]
            elif task == "multilabel":
                row = [";".join(n for n, t in zip(names, targets[i]) if t)]
            else:
                row = [f"{v:.6g}" for v in np.atleast_1d(targets[i])]
            out.writerow([rel, *row])
    return root / "labels.csv"


def write_folder(x, y, names, root):
    """The images as a folder of class sub-folders of PNGs (what a user points automl at)."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / names[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


def as_source(name: str, root) -> str:
    """``automl search --data`` for dataset ``name``: "demo", or a folder written under ``root``."""
    if name == "digits":
        return "demo"
    x, y, names = DATASETS[name]()
    return str(write_folder(x, y, names, f"{root}/{name}"))


def automl_split(src: str):
    """(bundle, native size): the split the default search makes of ``src`` (seed 0)."""
    from automl.autospace import probe_native_size, store_size_for
    from automl.data import load_data

    native = probe_native_size(src)
    return load_data(src, seed=0, store_size=store_size_for(native)), native


# --- synthetic folders of JPEGs at scale (bench/scale.py) ---------------------------------
#
# ``scale_folder(root, n)`` writes ``root/jpeg400x300-{n}/CLASS/{i:06d}.jpg``: n JPEGs of
# 400x300 (landscape), 10 classes, image i of class ``i % 10``. The class is the source photo
# (the ten colour photos of ``photos``); each image is a random 4:3 crop of 35-100 % of the
# photo's largest 4:3 box, randomly flipped, with a per-channel colour gain (0.8-1.2), a
# brightness shift, Gaussian noise (sigma 0-8) and a JPEG quality of 75-95, all drawn from a
# generator seeded by i: image i is the same file in every folder, so a smaller folder
# hard-links the files a larger one already has. Generation runs in processes, writes each
# file under a temporary name then renames it, and skips files that exist: a killed run
# resumes where it stopped, and a second run does nothing.

SCALE_SIZE = (400, 300)  # width, height (PIL order)
_SOURCES = None


def _scale_sources():
    global _SOURCES
    if _SOURCES is None:
        from PIL import Image

        _SOURCES = [(name, Image.fromarray(img[..., :3])) for name, img in _photos().items()]
    return _SOURCES


def scale_class_names() -> list[str]:
    return [name for name, _ in _scale_sources()]


def _scale_image(i: int):
    """Image ``i`` of the scale folders: (class name, encoded JPEG bytes)."""
    import io

    from PIL import Image

    rng = np.random.default_rng([20261201, i])
    name, src = _scale_sources()[i % len(_scale_sources())]
    w, h = src.size
    bw, bh = (w, int(w * 3 / 4)) if w * 3 <= h * 4 else (int(h * 4 / 3), h)  # largest 4:3 box
    f = rng.uniform(0.35, 1.0)
    cw, ch = max(8, int(bw * f)), max(6, int(bh * f))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    im = src.resize(SCALE_SIZE, Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(im, np.float32)
    a = a * rng.uniform(0.8, 1.2, size=3) + rng.uniform(-20, 20)
    a = a + rng.normal(0.0, rng.uniform(0.0, 8.0), size=a.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=int(rng.integers(75, 96))
    )
    return name, out.getvalue()


def _scale_write(job) -> int:
    """Write images ``lo..hi-1`` of the folder ``root`` (skipping those that exist, linking
    those a sibling folder has); returns how many it wrote or linked."""
    import os
    from pathlib import Path

    root, lo, hi, siblings = job
    names = scale_class_names()
    done = 0
    for i in range(lo, hi):
        name = names[i % len(names)]
        dest = Path(root) / name / f"{i:06d}.jpg"
        if dest.exists():
            continue
        for sib in siblings:  # the same image in a larger folder: a hard link, no new bytes
            other = Path(sib) / name / dest.name
            if other.exists():
                try:
                    os.link(other, dest)
                    done += 1
                    break
                except OSError:
                    pass
        else:
            _, data = _scale_image(i)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            done += 1
    return done


def scale_folder(root, n: int, processes: int | None = None, progress=None):
    """The folder of ``n`` synthetic 400x300 JPEGs under ``root`` (made or completed; see above).

    ``progress(done, total)`` is called as chunks finish. Returns the folder's path.
    """
    import os
    from multiprocessing import get_context
    from pathlib import Path

    root = Path(root)
    folder = root / f"jpeg400x300-{n}"
    names = scale_class_names()
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    siblings = [
        str(p)
        for p in sorted(root.glob("jpeg400x300-*"))
        if p != folder and p.name.split("-")[-1].isdigit()
    ]
    chunk = 250
    jobs = [(str(folder), lo, min(lo + chunk, n), siblings) for lo in range(0, n, chunk)]
    processes = processes or os.cpu_count() or 1
    done = 0
    with get_context("spawn").Pool(processes) as pool:
        for k, _ in enumerate(pool.imap_unordered(_scale_write, jobs)):
            done = min(n, (k + 1) * chunk)
            if progress:
                progress(done, n)
    return folder


if __name__ == "__main__":
    for name, fn in DATASETS.items():
        x, y, names = fn()
        print(
            f"{name}: x {x.shape} {x.dtype}, {len(names)} classes, counts {np.bincount(y).tolist()}"
        )
    for name, fn in TASK_DATASETS.items():
        x, y, names, task = fn()
        if task == "regression":
            what = f"targets {y.min():.1f}-{y.max():.1f}, mean {y.mean():.2f}"
        elif task == "multilabel":
            what = f"label counts {y.sum(axis=0).tolist()}, {y.sum(1).mean():.2f} per image"
        else:
            what = f"counts {np.bincount(y).tolist()}"
        print(f"{name} ({task}): x {x.shape} {x.dtype}, {what}")
