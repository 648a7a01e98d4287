"""Synthetic bin photos in the exact layout of bucket aft-vbi-pds, for tests and local runs.

Each image shows EXPECTED_QUANTITY distinct objects in a tote or on a shelf, behind elastic
straps like the real bins, so that a model can learn to count them (even at 64x64 px).
Writes `bin-images/<id>.jpg` and `metadata/<id>.json`; optionally a `file_list.json` in
the published format. The same seed gives byte-identical files.

    python processing/synthetic.py --out DIR --per-class N --seed S \
        [--corrupt K --truncated K --missing-metadata K --file-list PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from atomic_io import write_atomic
from PIL import Image, ImageDraw

CLASSES = (1, 2, 3, 4, 5)
REPO_SCRIPT = __file__
_WORDS_A = ("Premium", "Classic", "Deluxe", "Organic", "Compact", "Heavy Duty", "Mini", "Pro")
_WORDS_B = ("Dog Treats", "Phone Case", "Coffee Mug", "Notebook", "Stove", "Playset", "Cable")
_WORDS_C = ("12 Ounce", "Pack of 3", "Black", "Large", "6 Count", "2-Pack", "Blue")
_NOISE_TILE = 640


@dataclass
class GeneratedDataset:
    """What `generate` wrote: usable images with their counts, and the deliberately bad ones."""

    root: Path
    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    missing_metadata: list[str] = field(default_factory=list)

    def file_list(self) -> dict[str, list[str]]:
        """Every generated item (bad ones included) in the published list format."""
        listing: dict[str, list[str]] = {}
        bad = {i: 1 + n % len(CLASSES) for n, i in enumerate(self.bad_ids())}
        for image_id, label in [*zip(self.ids, self.labels, strict=True), *bad.items()]:
            listing.setdefault(str(label), []).append(f"data/metadata/{image_id}.json")
        return dict(sorted(listing.items(), key=lambda kv: int(kv[0])))

    def bad_ids(self) -> list[str]:
        return [*self.corrupt, *self.truncated, *self.missing_metadata]


def image_id(index: int) -> str:
    """Ids as in the dataset: strings, some zero-padded, and `0NNNN` beside `NNNN` sometimes."""
    number = 1000 + index
    if index % 4 == 0:  # always one leading zero, whatever the number of digits
        return f"0{number}"
    if index % 8 == 1:  # the unpadded twin of the previous (padded) id: a different image
        return str(number - 1)
    return str(number)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _background_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    tone = int(rng.integers(70, 130))
    if rng.random() < 0.5:
        return (tone - 20, tone, tone + int(rng.integers(10, 60)))  # bluish tote
    return (tone + 20, tone + 5, tone - 15)  # cardboard/shelf


def _background(base: tuple[int, int, int], rng, size: tuple[int, int]) -> Image.Image:
    """A tote (blue/grey plastic with a rim) or a shelf (brown/grey with a back wall)."""
    w, h = size
    img = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(img)
    rim = int(rng.integers(12, 30))
    dark = tuple(max(0, c - 45) for c in base)
    draw.rectangle([0, 0, w, rim], fill=dark)
    draw.rectangle([0, h - rim, w, h], fill=dark)
    draw.rectangle([0, 0, rim, h], fill=dark)
    draw.rectangle([w - rim, 0, w, h], fill=dark)
    return img


def _contrasting(rng: np.random.Generator, background: tuple[int, int, int]) -> tuple:
    """A colour whose brightness differs clearly from the bin's, so that objects stand out."""
    floor = sum(background) / 3
    for _ in range(20):
        colour = _colour(rng)
        if abs(sum(colour) / 3 - floor) > 60:
            return colour
    return (240, 240, 240) if floor < 128 else (20, 20, 20)


def _sku_look(rng: np.random.Generator, background: tuple[int, int, int]) -> dict:
    """How one product looks: every unit of it in the bin looks alike."""
    return {
        "shape": str(rng.choice(["box", "box", "ellipse", "poly"])),
        "colour": _contrasting(rng, background),
        "w": int(rng.integers(70, 140)),
        "h": int(rng.integers(60, 120)),
        "label": bool(rng.random() < 0.6),
    }


def _place(rng, size, boxes, w, h) -> tuple[int, int]:
    """A spot that overlaps the others by at most a sliver, so that each object stays countable."""
    width, height = size
    best, best_overlap = (0, 0), None
    for _ in range(30):
        x = int(rng.integers(20, max(21, width - w - 20)))
        y = int(rng.integers(20, max(21, height - h - 20)))
        overlap = 0.0
        for bx, by, bw, bh in boxes:
            ix = max(0, min(x + w, bx + bw) - max(x, bx))
            iy = max(0, min(y + h, by + bh) - max(y, by))
            overlap = max(overlap, ix * iy / min(w * h, bw * bh))
        if overlap <= 0.1:
            return x, y
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = (x, y), overlap
    return best


def _draw_object(draw: ImageDraw.ImageDraw, look: dict, x: int, y: int, rng) -> None:
    w = max(30, int(look["w"] * rng.uniform(0.9, 1.1)))
    h = max(30, int(look["h"] * rng.uniform(0.9, 1.1)))
    fill = look["colour"]
    edge = tuple(max(0, c - 70) for c in fill)
    if look["shape"] == "ellipse":
        draw.ellipse([x, y, x + w, y + h], fill=fill, outline=edge, width=3)
    elif look["shape"] == "poly":
        cx, cy = x + w / 2, y + h / 2
        # Evenly spread corners (jittered) keep the polygon about as large as its box.
        angles = np.arange(6) * np.pi / 3 + rng.uniform(-0.3, 0.3, size=6)
        radii = rng.uniform(0.8, 1.0, size=6)
        pts = [
            (cx + r * w / 2 * np.cos(a), cy + r * h / 2 * np.sin(a))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(pts, fill=fill, outline=edge, width=3)
    else:
        draw.rectangle([x, y, x + w, y + h], fill=fill, outline=edge, width=3)
    if look["label"]:  # a white product label, as on many real items
        lw, lh = w // 3, h // 4
        draw.rectangle([x + w // 3, y + h // 3, x + w // 3 + lw, y + h // 3 + lh], fill=(235,) * 3)
    return None


def _straps(draw: ImageDraw.ImageDraw, rng, size) -> None:
    """Elastic straps across the front of the bin, as in the real photos."""
    width, height = size
    colour = _colour(rng, 150, 230) if rng.random() < 0.5 else _colour(rng, 20, 60)
    for _ in range(int(rng.integers(1, 4))):
        y = int(rng.integers(0, height))
        thickness = int(rng.integers(4, 9))
        slope = int(rng.integers(-40, 41))
        draw.line([(0, y), (width, y + slope)], fill=colour, width=thickness)


class _Renderer:
    def __init__(self, seed: int) -> None:
        shape = (4, _NOISE_TILE, _NOISE_TILE)
        tiles = np.random.default_rng([seed, 0x5EED]).normal(0, 1, size=shape)
        self._noise = tiles.astype(np.float32)

    def render(self, rng: np.random.Generator, counts: list[int]) -> bytes:
        size = (int(rng.integers(460, 540)), int(rng.integers(370, 430)))
        base = _background_colour(rng)
        img = _background(base, rng, size)
        looks = [_sku_look(rng, base) for _ in counts]
        draw = ImageDraw.Draw(img)
        boxes: list[tuple[int, int, int, int]] = []
        for look, count in zip(looks, counts, strict=True):
            for _ in range(count):
                x, y = _place(rng, size, boxes, look["w"], look["h"])
                _draw_object(draw, look, x, y, rng)
                boxes.append((x, y, look["w"], look["h"]))
        _straps(draw, rng, size)
        pixels = np.asarray(img, dtype=np.float32)
        # Lighting: overall gain plus a left-right gradient; then sensor noise.
        gain = rng.uniform(0.75, 1.2)
        ramp = np.linspace(1 - rng.uniform(0, 0.25), 1, size[0], dtype=np.float32)
        if rng.random() < 0.5:
            ramp = ramp[::-1]
        tile = self._noise[int(rng.integers(0, 4))]
        oy = int(rng.integers(0, _NOISE_TILE - size[1]))
        ox = int(rng.integers(0, _NOISE_TILE - size[0]))
        noise = tile[oy : oy + size[1], ox : ox + size[0], None] * rng.uniform(2, 9)
        pixels = pixels * (gain * ramp)[None, :, None] + noise
        out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(80, 93)))
        return buf.getvalue()


def _name(rng) -> str:
    return f"{rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)}, {rng.choice(_WORDS_C)}"


def _dimension(rng, low: float, high: float, unit: str) -> dict:
    return {"unit": unit, "value": float(rng.uniform(low, high))}


def metadata_for(rng: np.random.Generator, ident: str, counts: list[int]) -> dict:
    """The metadata JSON of one bin, with the real dataset's keys and quirks."""
    skus: dict[str, dict] = {}
    for count in counts:
        asin = "B0" + "".join(rng.choice(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), size=8))
        # Some bins key a product by an FC-specific SKU that differs from its ASIN.
        key = asin if rng.random() < 0.8 else "ZZ" + asin[2:]
        name = _name(rng)
        entry = {
            "asin": asin,
            "height": _dimension(rng, 0.5, 8, "IN"),
            "length": _dimension(rng, 2, 14, "IN"),
            "name": name,
            "quantity": int(count),
            "weight": _dimension(rng, 0.1, 6, "pounds"),
            "width": _dimension(rng, 1, 10, "IN"),
        }
        if rng.random() < 0.3:
            entry["normalizedName"] = name
        skus[key] = dict(sorted(entry.items()))
    meta: dict = {"BIN_FCSKU_DATA": skus, "EXPECTED_QUANTITY": int(sum(counts))}
    if rng.random() < 0.9:  # a few real files lack image_fname
        meta["image_fname"] = f"{ident}.jpg"
    return meta


def _split_quantity(rng, quantity: int) -> list[int]:
    """Split `quantity` units over 1..3 products (quantities sum to it)."""
    if quantity <= 0:
        return []
    products = int(rng.integers(1, min(quantity, 3) + 1))
    cuts = np.sort(rng.choice(np.arange(1, quantity), size=products - 1, replace=False))
    return [int(c) for c in np.diff(np.concatenate([[0], cuts, [quantity]]))]


# Each image depends only on (seed, index): rendered on every core when there are enough of
# them to pay for starting the workers, written here in order, so the output is the same.
PARALLEL_FROM = 200
_worker_renderer: _Renderer | None = None


def _render_one(renderer: _Renderer, seed: int, index: int, quantity: int) -> tuple[bytes, dict]:
    rng = np.random.default_rng([seed, 2, index])
    counts = _split_quantity(rng, quantity)
    jpeg = renderer.render(rng, counts)
    return jpeg, metadata_for(rng, image_id(index), counts)


def _start_worker(seed: int) -> None:
    global _worker_renderer
    _worker_renderer = _Renderer(seed)


def _render_in_worker(job: tuple[int, int, int]) -> tuple[bytes, dict]:
    return _render_one(_worker_renderer, *job)


def _render_all(renderer: _Renderer, jobs: list[tuple[int, int, int]]):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if len(jobs) < PARALLEL_FROM or (cores or 1) < 2:
        return (_render_one(renderer, *job) for job in jobs)
    pool = ProcessPoolExecutor(cores, initializer=_start_worker, initargs=(jobs[0][0],))
    return _ordered(pool, jobs)


def _ordered(pool: ProcessPoolExecutor, jobs: list[tuple[int, int, int]]):
    with pool:
        yield from pool.map(_render_in_worker, jobs, chunksize=16)


def generate(
    out_dir: str | Path,
    per_class: int,
    seed: int = 0,
    *,
    classes: tuple[int, ...] = CLASSES,
    corrupt: int = 0,
    truncated: int = 0,
    missing_metadata: int = 0,
    file_list: str | Path | None = None,
    start_index: int = 0,
) -> GeneratedDataset:
    """Write `per_class` images of each count in `classes` (plus bad items on request).

    `start_index` offsets the ids, so that a second call adds new images beside the first.
    """
    if per_class < 0 or min(corrupt, truncated, missing_metadata) < 0:
        raise ValueError("per_class, corrupt, truncated and missing_metadata must be >= 0")
    if any(c < 0 for c in classes):
        raise ValueError(f"classes must be counts >= 0, got {classes}")
    root = Path(out_dir)
    plan = [c for _ in range(per_class) for c in classes]
    plan = [plan[i] for i in np.random.default_rng([seed, 1]).permutation(len(plan))]
    data = GeneratedDataset(root=root)
    renderer = _Renderer(seed)
    bad_kinds = ["corrupt"] * corrupt + ["truncated"] * truncated
    bad_kinds += ["missing_metadata"] * missing_metadata
    quantities = [*plan, *[2] * len(bad_kinds)]
    jobs = [(seed, start_index + offset, q) for offset, q in enumerate(quantities)]
    for offset, (quantity, (jpeg, meta)) in enumerate(
        zip(quantities, _render_all(renderer, jobs), strict=True)
    ):
        ident = image_id(start_index + offset)
        kind = bad_kinds[offset - len(plan)] if offset >= len(plan) else "good"
        if kind == "corrupt":  # the header wiped out: no decoder recognises the file
            jpeg = bytes(64) + jpeg[64:]
        elif kind == "truncated":
            jpeg = jpeg[: len(jpeg) * 3 // 5]
        write_atomic(root / "bin-images" / f"{ident}.jpg", jpeg)
        if kind != "missing_metadata":
            payload = json.dumps(meta, indent=4, sort_keys=True).encode()
            write_atomic(root / "metadata" / f"{ident}.json", payload)
        if kind == "good":
            data.ids.append(ident)
            data.labels.append(quantity)
        else:
            getattr(data, kind).append(ident)
    if file_list is not None:
        write_atomic(Path(file_list), json.dumps(data.file_list()).encode())
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write bin-images/ and metadata/")
    parser.add_argument("--per-class", type=int, required=True, help="images per count 1..5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corrupt", type=int, default=0, help="extra undecodable JPEGs")
    parser.add_argument("--truncated", type=int, default=0, help="extra truncated JPEGs")
    parser.add_argument("--missing-metadata", type=int, default=0, help="extra images, no JSON")
    parser.add_argument("--file-list", help="also write a file_list.json (published format)")
    args = parser.parse_args(argv)
    data = generate(
        args.out,
        args.per_class,
        args.seed,
        corrupt=args.corrupt,
        truncated=args.truncated,
        missing_metadata=args.missing_metadata,
        file_list=args.file_list,
    )
    bad = len(data.bad_ids())
    print(f"wrote {len(data.ids)} images (+{bad} bad) to {data.root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
