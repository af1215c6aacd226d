"""Clips of a real MNIST digit moving up, down, left or right, for video classification by direction.

    python scripts/make_moving_digits.py --out data/moving_digits [--seed 0] [--train 4000 --test 1000]
        [--frames 16] [--size 48]

Digits come from $DANLU_DATA/mnist/t10k-images-idx3-ubyte.gz (the only MNIST images the data folder
holds): images 0..7999 make the training clips and 8000..9999 the test clips, so no digit image is in
both; each clip draws its own image without replacement (while the pool lasts). A clip is --frames
frames of a black --size square canvas with one digit, resized to a random side in SIDES, sliding in a
straight line at a random speed (SPEED px per frame, at most what keeps it inside the canvas) from a
random start; the label is its direction.

Written under --out as H.264 in MP4 (PyAV, yuv420p, 10 frames per second, one encoder thread so the
same arguments give byte-identical files):
    train/<direction>/NNNNN.mp4
    test/<direction>/NNNNN.mp4

A recipe reads `data: {train: ../data/moving_digits/train, test: ../data/moving_digits/test}` (relative
to recipes/); data/ is made, never committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}  # (dx, dy)
SIDES = (18, 24)  # the digit's side in pixels, drawn per clip
SPEED = (0.8, 2.0)  # pixels per frame, drawn per clip
FPS = 10
TRAIN_POOL, TEST_POOL = range(0, 8000), range(8000, 10000)


def load_digits(data_root: Path) -> np.ndarray:
    from danlu.data.images import read_idx

    frame = read_idx({"images": str(data_root / "mnist" / "t10k-images-idx3-ubyte.gz")}, None)
    return np.stack(frame["image"].to_numpy())


def clip_frames(digit: np.ndarray, direction: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, size, size) uint8: the digit at a random side sliding in `direction`."""
    side = int(rng.integers(SIDES[0], SIDES[1] + 1))
    small = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR))
    steps = max(frames - 1, 1)
    speed = float(rng.uniform(SPEED[0], min(SPEED[1], (size - side) / steps)))
    travel = speed * steps
    dx, dy = DIRECTIONS[direction]
    along = float(rng.uniform(0, size - side - travel))  # the start, so that the end is still inside
    across = float(rng.integers(0, size - side + 1))
    out = np.zeros((frames, size, size), dtype=np.uint8)
    for t in range(frames):
        moved = along + speed * t
        # Moving left or up starts from the far side.
        position = moved if (dx + dy) > 0 else size - side - moved
        x, y = (position, across) if dx else (across, position)
        x, y = int(round(x)), int(round(y))
        out[t, y:y + side, x:x + side] = small
    return out


def write_clip(path: Path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "17", "preset": "medium", "threads": "1"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # one thread: the same bytes on every run
        grey_chroma = np.full((frames.shape[1] // 2, frames.shape[2]), 128, dtype=np.uint8)
        for frame in frames:
            # yuv420p planes given whole (luma = the grey frame, neutral chroma): no pixel format conversion.
            planes = np.concatenate([frame, grey_chroma])
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_split(out: Path, name: str, digits: np.ndarray, pool: range, count: int, frames: int, size: int,
               rng: np.random.Generator) -> None:
    names = list(DIRECTIONS)
    order = rng.permutation(np.asarray(pool))
    picks = np.concatenate([order, rng.choice(order, max(0, count - len(order)))])[:count]
    for direction in names:
        (out / name / direction).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(picks):
        direction = names[i % len(names)]
        write_clip(out / name / direction / f"{i:05d}.mp4",
                   clip_frames(digits[int(image)], direction, frames, size, rng))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=48)
    args = parser.parse_args(argv)
    if args.size % 2 or args.size < SIDES[1] + 8:
        parser.error(f"--size must be even (yuv420p) and at least {SIDES[1] + 8}")
    if args.frames < 2:
        parser.error("--frames must be at least 2: a direction needs two frames")
    from danlu.data.paths import data_root

    root = data_root()
    if root is None or not (root / "mnist").is_dir():
        print("no mnist folder: set DANLU_DATA to the folder that holds mnist/", file=sys.stderr)
        return 2
    digits = load_digits(root)
    rng = np.random.default_rng(args.seed)
    make_split(args.out, "train", digits, TRAIN_POOL, args.train, args.frames, args.size, rng)
    make_split(args.out, "test", digits, TEST_POOL, args.test, args.frames, args.size, rng)
    print(f"{args.train:,} train and {args.test:,} test clips under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
