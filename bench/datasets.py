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
