"""Digit canvases for detection and segmentation, made from the real MNIST images.

    python scripts/make_digit_canvases.py --out data/digit_canvases [--seed 0] [--train 2000 --test 400]
        [--size 64] [--digits 1-3] [--scale 16-28]

Digits come from $DANLU_DATA/mnist/t10k-images-idx3-ubyte.gz (the only MNIST images the data folder
holds): images 0..7999 make the training canvases and 8000..9999 the test canvases, so no digit image
is in both. Each canvas is black, --size pixels square, with 1-3 (--digits) digits resized to a random
side in --scale and pasted by the pixel-wise maximum at random places; a digit whose box would cover
more than MAX_OVERLAP of another digit's box (or of its own) is placed elsewhere.

Written under --out:
    images/{train,test}_NNNNN.png       the canvases (8-bit grey)
    annotations/{train,test}.json       COCO instances: categories "0".."9" (id = digit + 1), bbox = the
                                        tight box of the pasted digit's pixels above THRESHOLD, segmentation
                                        = the RLE (pycocotools) of those pixels, area = their count
    masks/{train,test}_NNNNN.png        semantic masks, uint8: 0 background, digit d -> d + 1 (later digits
                                        paint over earlier ones), same stem as the image

The same arguments give byte-identical files. A recipe reads e.g.
`data: {train: ../data/digit_canvases/annotations/train.json, test: ../data/digit_canvases/annotations/test.json}`
(relative to recipes/); data/ is ignored by git: the set is made, never committed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

THRESHOLD = 64  # a resized digit's pixel (0-255) above this belongs to the digit
MAX_OVERLAP = 0.2  # of the smaller box's area two digits' boxes may share
PLACEMENT_TRIES = 50
TRAIN_POOL, TEST_POOL = range(0, 8000), range(8000, 10000)


def parse_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    low, high = int(low), int(high or low)
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH with 0 < LOW <= HIGH, got {text!r}")
    return low, high


def load_mnist(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    from danlu.data.images import read_idx

    folder = data_root / "mnist"
    frame = read_idx({"images": str(folder / "t10k-images-idx3-ubyte.gz"),
                      "labels": str(folder / "t10k-labels-idx1-ubyte.gz")}, None)
    return np.stack(frame["image"].to_numpy()), frame["label"].to_numpy()


def _shared(a: tuple, b: tuple) -> float:
    """The area boxes a and b (x, y, w, h) share, over the smaller one's."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / min(a[2] * a[3], b[2] * b[3])


def canvas(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, pool: range, size: int,
           count: tuple[int, int], scale: tuple[int, int]) -> tuple[np.ndarray, list[dict]]:
    """One canvas and its objects [{digit, bbox, mask}] (mask: the digit's pixels on the canvas)."""
    from pycocotools import mask as mask_utils

    image = np.zeros((size, size), dtype=np.uint8)
    objects: list[dict] = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        index = int(rng.integers(pool.start, pool.stop))
        side = int(rng.integers(scale[0], min(scale[1], size) + 1))
        patch = np.asarray(Image.fromarray(digits[index]).resize((side, side), Image.BILINEAR))
        ys, xs = np.nonzero(patch > THRESHOLD)
        tight = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        for _ in range(PLACEMENT_TRIES):
            x, y = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            box = (x + tight[0], y + tight[1], tight[2], tight[3])
            if all(_shared(box, other["bbox"]) <= MAX_OVERLAP for other in objects):
                break
        else:
            continue  # no room left on this canvas
        region = image[y:y + side, x:x + side]
        np.maximum(region, patch, out=region)
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[y:y + side, x:x + side] = patch > THRESHOLD
        rle = mask_utils.encode(np.asfortranarray(mask))
        objects.append({"digit": int(labels[index]), "bbox": box, "area": int(mask.sum()),
                        "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}})
    return image, objects


def make_split(split: str, n: int, rng: np.random.Generator, digits, labels, pool: range, out: Path,
               args) -> dict:
    from danlu.data.coco import semantic_mask

    images, annotations = [], []
    class_index = {str(d): d + 1 for d in range(10)}
    for i in range(n):
        image, objects = canvas(rng, digits, labels, pool, args.size, args.digits, args.scale)
        stem = f"{split}_{i:05d}"
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": f"{stem}.png", "width": args.size, "height": args.size})
        coco_objects = []
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj["digit"] + 1,
                                "bbox": [float(v) for v in obj["bbox"]], "area": float(obj["area"]),
                                "iscrowd": 0, "segmentation": obj["rle"]})
            coco_objects.append({"category": str(obj["digit"]), "segmentation": obj["rle"]})
        Image.fromarray(image, mode="L").save(out / "images" / f"{stem}.png")
        mask = semantic_mask(coco_objects, args.size, args.size, class_index)
        Image.fromarray(mask, mode="L").save(out / "masks" / f"{stem}.png")
    return {"info": {"description": f"MNIST digits on {args.size}x{args.size} canvases ({split}), "
                                    f"scripts/make_digit_canvases.py seed {args.seed}"},
            "images": images, "annotations": annotations,
            "categories": [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--digits", type=parse_range, default=(1, 3), help="digits per canvas, LOW-HIGH")
    parser.add_argument("--scale", type=parse_range, default=(16, 28), help="a digit's side in pixels, LOW-HIGH")
    parser.add_argument("--data", type=Path, default=None, help="the datasets folder (default $DANLU_DATA)")
    args = parser.parse_args(argv)
    if args.scale[0] > args.size:
        parser.error(f"--scale {args.scale[0]}-{args.scale[1]} does not fit a {args.size}px canvas")

    from danlu.data.paths import data_root

    root = args.data or data_root()
    if root is None or not (root / "mnist").is_dir():
        print(f"no mnist folder under {root}; set DANLU_DATA or --data", file=sys.stderr)
        return 2
    digits, labels = load_mnist(root)
    for folder in ("images", "annotations", "masks"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    # One generator per split: the test canvases do not change when --train does.
    for offset, (split, n, pool) in enumerate((("train", args.train, TRAIN_POOL), ("test", args.test, TEST_POOL))):
        rng = np.random.default_rng([args.seed, offset])
        content = make_split(split, n, rng, digits, labels, pool, args.out, args)
        (args.out / "annotations" / f"{split}.json").write_text(json.dumps(content, indent=1) + "\n",
                                                                encoding="utf-8")
        print(f"{split}: {len(content['images'])} canvases, {len(content['annotations'])} digits")
    print(f"written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
