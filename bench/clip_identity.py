"""Rank-1 and acceptance through camera clips against clean silhouettes: what a camera user gets.

Real walks of held-out CASIA-B subjects (063-074 by default: never trained on by a validation
model) are composited into camera clips (``gaitid.training.synth.camera``: a textured static
scene, the person crossing or walking obliquely as their CASIA-B view says, at a drawn size,
in textured or low-contrast clothing, with sensor noise, lighting drift, sometimes a cast
shadow, encoded as mp4v or MJPG). Each clip is read once and every probe walk is embedded by
each ONNX model (``--model`` takes several: same clips, same draws) along four routes:

- *clean*: its CASIA-B silhouettes as they are (the pretreated 64x64 frames);
- *kept*: the clean frames cut to those its clip kept (the person fully in the picture);
- *truth*: those frames as a flawless segmenter masks them in the clip (the composited truth
  reduced to the working height: ``gaitid.training.clip_walks.read_truth``);
- *clip*: the encoded clip through ``gaitid.decode.decode_upload``, i.e. decoding,
  ``gaitid.segment`` and the pretreatment, exactly as the service reads an upload.

So the clip route's cost splits into the frames it loses (clean -> kept), the composite's
resampling (kept -> truth) and the segmentation (truth -> clip). A refused clip is a miss and
no accepted pair on the last three routes.

The gallery is each subject's nm-01 walk at 090, clean (one template a person, as an operator
enrols). Printed per model, condition (NM = nm-05, BG = bg-01, CL = cl-01) and route: rank-1,
the genuine acceptance rate at the model's threshold (probe vs its own template), the
impostor pass rate (vs every other template); then the cosine between the clean and clip
embeddings of the same walk, mask IoU against the composited truth (working size, kept
frames), and frames: fully visible in the clip vs kept, with the reasons for every visible
frame that was dropped. Usage::

    .venv/bin/python bench/clip_identity.py --model models/gaitid-lmgcs.onnx [OTHER.onnx] \\
        --data ../shared/data/casia-b-train --out ../runs/bench/clip-identity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gaitid.segment import SegmentationConfig
from gaitid.training.clip_walks import read_through_clip, read_truth
from gaitid.training.synth.camera import Camera, draw_camera

CONDITIONS = {"NM": "nm-05", "BG": "bg-01", "CL": "cl-01"}
GALLERY = ("nm-01", "090")
DEFAULT_VIEWS = ("018", "054", "072", "108", "126", "162")
#: The routes a probe walk is embedded along, clean first (see the module docstring).
ROUTES = ("clean", "kept", "truth", "clip")
#: What each step between two routes costs, named after what changes.
STEPS = (
    ("frames", "clean", "kept"),
    ("resampling", "kept", "truth"),
    ("segmentation", "truth", "clip"),
)


@dataclass
class Probe:
    """One probe walk and its network inputs by route (a refused clip has only ``clean``)."""

    subject: str
    condition: str  # NM / BG / CL
    view: str
    camera: Camera
    walks: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    error: str | None = None
    iou: float = float("nan")
    visible: int = 0
    kept: int = 0
    dropped_visible: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Embedder:
    """The ONNX model as the service runs it (the contract's inputs, batch of one walk)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        from gaitid.contract import read_metadata

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.meta = read_metadata(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, walk: NDArray[np.uint8]) -> NDArray[np.float32]:
        from gaitid.contract import (
            INPUT_LENGTHS,
            INPUT_SILHOUETTES,
            OUTPUT_EMBEDDING,
            batch_sequences,
        )

        silhouettes, lengths = batch_sequences([walk])
        (out,) = self.session.run(
            [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
        )
        return np.asarray(out[0], np.float32)


def read_probe(
    probe: Probe,
    frames64: NDArray[np.uint8],
    seed: int,
    config: SegmentationConfig | None = None,
) -> None:
    """Every route of one probe walk: its clean frames, and its clip composited, encoded,
    decoded and segmented, with the clean frames the clip kept and their flawless masks."""
    probe.walks["clean"] = network_input(frames64)
    frames, record = read_through_clip(frames64, probe.camera, seed, config)
    probe.seconds = record.seconds
    probe.visible = record.visible
    if frames is None:
        probe.error = record.error
        return
    probe.walks["clip"] = frames
    probe.kept = record.kept
    probe.iou = record.iou
    probe.dropped_visible = record.dropped_visible
    if record.source_frames:  # else the pretreatment dropped a segmented frame: order lost
        probe.walks["kept"] = network_input(frames64[record.source_frames])
        truth = read_truth(frames64, probe.camera, record.source_frames, config)
        if len(truth):
            probe.walks["truth"] = truth


def _scores(
    probes: list[Probe],
    embedded: list[dict[str, NDArray[np.float32]]],
    route: str,
    gallery: dict[str, NDArray[np.float32]],
    threshold: float,
) -> dict[str, dict[str, float]]:
    names = sorted(gallery)
    matrix = np.stack([gallery[n] for n in names])
    table: dict[str, dict[str, float]] = {}
    for condition in CONDITIONS:
        hits = genuine = impostor = impostor_n = total = 0
        for probe, vectors in zip(probes, embedded, strict=True):
            if probe.condition != condition:
                continue
            vector = vectors.get(route)
            total += 1
            if vector is None:  # refused: a miss, and no accepted pair
                impostor_n += len(names) - 1
                continue
            scores = matrix @ vector
            own = names.index(probe.subject)
            hits += int(np.argmax(scores) == own)
            genuine += int(scores[own] >= threshold)
            others = np.delete(scores, own)
            impostor += int((others >= threshold).sum())
            impostor_n += others.size
        table[condition] = {
            "rank1": 100.0 * hits / max(total, 1),
            "genuine_accept": 100.0 * genuine / max(total, 1),
            "impostor_pass": 100.0 * impostor / max(impostor_n, 1),
            "probes": total,
        }
    return table


@dataclass
class Measurement:
    """One model's embeddings of every probe along every route, its clean gallery and its
    threshold (the probes, and so the clips, are shared by the models of one run)."""

    model: str
    probes: list[Probe]
    embedded: list[dict[str, NDArray[np.float32]]]
    gallery: dict[str, NDArray[np.float32]]
    threshold: float
    seconds: float

    def table(self, route: str) -> dict[str, dict[str, float]]:
        return _scores(self.probes, self.embedded, route, self.gallery, self.threshold)

    def mean(self, route: str, figure: str) -> float:
        table = self.table(route)
        return float(np.mean([table[c][figure] for c in CONDITIONS]))

    def cosines(self) -> NDArray[np.float64]:
        """Cosine between the clean and the clip embedding of each walk read both ways."""
        return np.array(
            [float(v["clean"] @ v["clip"]) for v in self.embedded if "clip" in v and "clean" in v]
        )


def read_probes(
    data: Path,
    subjects: list[str],
    views: list[str],
    *,
    seed: int = 0,
    log: bool = True,
    config: SegmentationConfig | None = None,
) -> tuple[list[Probe], dict[str, NDArray[np.uint8]]]:
    """Every probe walk of ``subjects`` at ``views`` read along every route, and each
    subject's gallery walk (network input)."""
    rng = np.random.default_rng(seed)
    gallery: dict[str, NDArray[np.uint8]] = {}
    probes: list[Probe] = []
    for subject in subjects:
        walks = np.load(data / f"{subject}.npz")
        key = f"{GALLERY[0]}/{GALLERY[1]}"
        if key not in walks.files:
            continue
        gallery[subject] = network_input(walks[key])
        for condition, walk in CONDITIONS.items():
            for view in views:
                if f"{walk}/{view}" not in walks.files:
                    continue
                probe = Probe(subject, condition, view, draw_camera(view, rng))
                read_probe(probe, walks[f"{walk}/{view}"], int(rng.integers(0, 2**31)), config)
                probes.append(probe)
                if log:
                    state = probe.error or f"kept {probe.kept}/{probe.visible} visible"
                    print(f"{subject} {walk}/{view}: {state}", flush=True)
    return probes, gallery


def embed_probes(
    model: Path,
    probes: list[Probe],
    gallery: dict[str, NDArray[np.uint8]],
    seconds: float = 0.0,
) -> Measurement:
    """``model``'s embedding of every route of every probe, and of the gallery (``seconds``:
    what reading the probes took, counted in the measurement's time). Several models share
    one :func:`read_probes`: the same clips, the same draws."""
    embed = Embedder(model)
    tick = time.perf_counter()
    embedded = [{route: embed(walk) for route, walk in p.walks.items()} for p in probes]
    return Measurement(
        model=model.name,
        probes=probes,
        embedded=embedded,
        gallery={subject: embed(walk) for subject, walk in gallery.items()},
        threshold=float(embed.meta.default_threshold or 0.5),
        seconds=seconds + time.perf_counter() - tick,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="ONNX model files")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/casia-b-train"))
    parser.add_argument("--subjects", default="063-074", help="e.g. 063-074")
    parser.add_argument("--views", nargs="+", default=list(DEFAULT_VIEWS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON with every probe's figures")
    parser.add_argument(
        "--segmentation",
        default="{}",
        help="SegmentationConfig fields as JSON, e.g. '{\"background_passes\": 0}'",
    )
    args = parser.parse_args(argv)

    from gaitid.training.data.opengait import parse_subject_spec

    subjects = parse_subject_spec(args.subjects)
    config = SegmentationConfig.model_validate_json(args.segmentation)
    tick = time.perf_counter()
    probes, gallery = read_probes(args.data, subjects, args.views, seed=args.seed, config=config)
    reading = time.perf_counter() - tick
    results = [embed_probes(model, probes, gallery, reading) for model in args.model]
    report(results, args)
    return 0


def network_input(frames64: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A CASIA-B walk's 64x64 frames as the network sees them, through the service's
    pretreatment (shared by the benches that compare clean walks with clip readings)."""
    from gaitid.preprocess import normalize_sequence, to_network_input

    return to_network_input(normalize_sequence(frames64).frames)


def report_model(result: Measurement) -> dict[str, object]:
    """Print one model's tables; its summary for the JSON."""
    tables = {route: result.table(route) for route in ROUTES}
    clean = tables["clean"]
    print(
        f"\n## {result.model}: threshold {result.threshold:.4f}, {len(result.gallery)} "
        f"identities, {len(result.probes)} probe walks, {result.seconds:.0f} s"
    )
    print(
        "| condition | rank-1 clean | rank-1 clip | loss | genuine accepted "
        + " / ".join(ROUTES)
        + " | impostors passing clean / clip |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for c in [*CONDITIONS, "mean"]:
        row = {
            r: (
                {f: float(np.mean([tables[r][k][f] for k in CONDITIONS])) for f in clean["NM"]}
                if c == "mean"
                else tables[r][c]
            )
            for r in ROUTES
        }
        accepted = " / ".join(f"{row[r]['genuine_accept']:.1f}" for r in ROUTES)
        print(
            f"| {c} | {row['clean']['rank1']:.1f} | {row['clip']['rank1']:.1f} | "
            f"{row['clean']['rank1'] - row['clip']['rank1']:.1f} | {accepted} | "
            f"{row['clean']['impostor_pass']:.2f} / {row['clip']['impostor_pass']:.2f} |"
        )
    steps = {
        name: result.mean(a, "genuine_accept") - result.mean(b, "genuine_accept")
        for name, a, b in STEPS
    }
    gap = result.mean("clean", "genuine_accept") - result.mean("clip", "genuine_accept")
    print(
        f"acceptance gap clean -> clip {gap:.1f} points: "
        + ", ".join(f"{name} {value:.1f}" for name, value in steps.items())
    )
    cosines = result.cosines()
    if cosines.size:
        print(
            f"cosine clean vs clip (same walk): mean {cosines.mean():.3f}, "
            f"p10 {np.percentile(cosines, 10):.3f}, min {cosines.min():.3f}"
        )
    return {"tables": tables, "threshold": result.threshold, "gap": gap, "steps": steps}


def report(results: list[Measurement], args: argparse.Namespace) -> None:
    probes = results[0].probes
    print(f"\n# {platform.machine()}, {len(probes)} probe walks read once for every model")
    summaries = {r.model: report_model(r) for r in results}
    done = [p for p in probes if "clip" in p.walks]
    refused = Counter((p.error or "").split(":")[0] for p in probes if p.error)
    visible = sum(p.visible for p in probes if p.error is None)
    kept = sum(p.kept for p in probes if p.error is None)
    lost: Counter[str] = Counter()
    for p in probes:
        lost.update(p.dropped_visible)
    seconds = sum(p.seconds for p in probes)
    clip_seconds = sum(p.visible for p in probes) / 25.0
    ious = np.array([p.iou for p in done if np.isfinite(p.iou)])
    if ious.size:
        print(
            f"\nmask IoU vs composited truth (working size): mean {ious.mean():.3f}, "
            f"p10 {np.percentile(ious, 10):.3f}"
        )
    print(
        f"frames fully visible {visible}, kept {kept}; visible frames dropped: "
        f"{dict(lost) or 'none'}; clips refused: {dict(refused) or 'none'}"
    )
    print(f"decode + segmentation: {seconds:.1f} s for ~{clip_seconds:.0f} s of 25 fps clips")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for index, p in enumerate(probes):
            row = {k: v for k, v in asdict(p).items() if k != "walks"}
            row["frames"] = {route: len(walk) for route, walk in p.walks.items()}
            row["cosine"] = {
                r.model: float(r.embedded[index]["clean"] @ r.embedded[index]["clip"])
                for r in results
                if "clip" in r.embedded[index]
            }
            rows.append(row)
        args.out.write_text(json.dumps({"models": summaries, "probes": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
