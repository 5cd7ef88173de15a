"""Rank-1 through camera clips against clean silhouettes: what a camera user gets.

Real walks of held-out CASIA-B subjects (063-074 by default: never trained on by a validation
model) are composited into camera clips (``gaitid.training.synth.camera``: a textured static
scene, the person crossing or walking obliquely as their CASIA-B view says, at a drawn size,
in textured or low-contrast clothing, with sensor noise, lighting drift, sometimes a cast
shadow, encoded as mp4v or MJPG), and each probe walk is embedded twice with one ONNX model:

- *clean*: its CASIA-B silhouettes as they are (the pretreated 64x64 frames);
- *clip*: the encoded clip through ``gaitid.decode.decode_upload``, i.e. decoding,
  ``gaitid.segment`` and the pretreatment, exactly as the service reads an upload.

The gallery is each subject's nm-01 walk at 090, clean (one template a person, as an operator
enrols). Printed per condition (NM = nm-05, BG = bg-01, CL = cl-01) and route: rank-1, the
genuine acceptance rate at the model's threshold (probe vs its own template), the impostor
pass rate (vs every other template); then the loss, the cosine between the two routes'
embeddings of the same walk, mask IoU against the composited truth (working size, kept
frames), and frames: fully visible in the clip vs kept, with the reasons for every visible
frame that was dropped. Usage::

    .venv/bin/python bench/clip_identity.py --model models/gaitid-lmgcs.onnx \\
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
from gaitid.training.clip_walks import read_through_clip
from gaitid.training.synth.camera import Camera, draw_camera

CONDITIONS = {"NM": "nm-05", "BG": "bg-01", "CL": "cl-01"}
GALLERY = ("nm-01", "090")
DEFAULT_VIEWS = ("018", "054", "072", "108", "126", "162")


@dataclass
class Probe:
    subject: str
    condition: str  # NM / BG / CL
    view: str
    camera: Camera
    clean: NDArray[np.float32] | None = None
    clip: NDArray[np.float32] | None = None
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


def run_clip(
    probe: Probe,
    frames64: NDArray[np.uint8],
    embed: Embedder,
    seed: int,
    config: SegmentationConfig | None = None,
) -> None:
    """The clip route of one probe walk: composite, encode, decode + segment, embed."""
    frames, record = read_through_clip(frames64, probe.camera, seed, config)
    probe.seconds = record.seconds
    probe.visible = record.visible
    if frames is None:
        probe.error = record.error
        return
    probe.clip = embed(frames)
    probe.kept = record.kept
    probe.iou = record.iou
    probe.dropped_visible = record.dropped_visible


def _scores(
    probes: list[Probe], route: str, gallery: dict[str, NDArray[np.float32]], threshold: float
) -> dict[str, dict[str, float]]:
    names = sorted(gallery)
    matrix = np.stack([gallery[n] for n in names])
    table: dict[str, dict[str, float]] = {}
    for condition in CONDITIONS:
        rows = [p for p in probes if p.condition == condition]
        hits = genuine = impostor = impostor_n = total = 0
        for probe in rows:
            vector = getattr(probe, route)
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
    """Every probe through both routes, the clean gallery and the model's threshold."""

    probes: list[Probe]
    gallery: dict[str, NDArray[np.float32]]
    threshold: float
    seconds: float

    def table(self, route: str) -> dict[str, dict[str, float]]:
        return _scores(self.probes, route, self.gallery, self.threshold)

    def mean(self, route: str, figure: str) -> float:
        table = self.table(route)
        return float(np.mean([table[c][figure] for c in CONDITIONS]))


def measure(
    model: Path,
    data: Path,
    subjects: list[str],
    views: list[str],
    *,
    seed: int = 0,
    log: bool = True,
    config: SegmentationConfig | None = None,
) -> Measurement:
    """Composite, segment and embed every probe walk of ``subjects`` at ``views``."""
    embed = Embedder(model)
    threshold = float(embed.meta.default_threshold or 0.5)
    rng = np.random.default_rng(seed)
    gallery: dict[str, NDArray[np.float32]] = {}
    probes: list[Probe] = []
    started = time.perf_counter()
    for subject in subjects:
        walks = np.load(data / f"{subject}.npz")
        key = f"{GALLERY[0]}/{GALLERY[1]}"
        if key not in walks.files:
            continue
        gallery[subject] = embed(_network(walks[key]))
        for condition, walk in CONDITIONS.items():
            for view in views:
                if f"{walk}/{view}" not in walks.files:
                    continue
                frames64 = walks[f"{walk}/{view}"]
                probe = Probe(subject, condition, view, draw_camera(view, rng))
                probe.clean = embed(_network(frames64))
                run_clip(probe, frames64, embed, int(rng.integers(0, 2**31)), config)
                probes.append(probe)
                if log:
                    state = probe.error or f"kept {probe.kept}/{probe.visible} visible"
                    print(f"{subject} {walk}/{view}: {state}", flush=True)
    return Measurement(probes, gallery, threshold, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX model file")
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
    result = measure(args.model, args.data, subjects, args.views, seed=args.seed, config=config)
    report(result, args)
    return 0


def _network(frames64: NDArray[np.uint8]) -> NDArray[np.uint8]:
    from gaitid.preprocess import normalize_sequence, to_network_input

    return to_network_input(normalize_sequence(frames64).frames)


def report(result: Measurement, args: argparse.Namespace) -> None:
    probes, gallery, threshold = result.probes, result.gallery, result.threshold
    elapsed = result.seconds
    clean, clip = result.table("clean"), result.table("clip")
    print(
        f"\n# {platform.machine()}, model {args.model.name}, threshold {threshold:.4f}, "
        f"{len(gallery)} identities, {len(probes)} probe walks, {elapsed:.0f} s"
    )
    print(
        "| condition | rank-1 clean | rank-1 clip | loss | genuine accepted clean / clip "
        "| impostors passing clean / clip |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for c in CONDITIONS:
        a, b = clean[c], clip[c]
        print(
            f"| {c} | {a['rank1']:.1f} | {b['rank1']:.1f} | {a['rank1'] - b['rank1']:.1f} | "
            f"{a['genuine_accept']:.1f} / {b['genuine_accept']:.1f} | "
            f"{a['impostor_pass']:.2f} / {b['impostor_pass']:.2f} |"
        )
    loss = np.mean([clean[c]["rank1"] - clip[c]["rank1"] for c in CONDITIONS])
    g_clean = np.mean([clean[c]["genuine_accept"] for c in CONDITIONS])
    g_clip = np.mean([clip[c]["genuine_accept"] for c in CONDITIONS])
    i_clean = np.mean([clean[c]["impostor_pass"] for c in CONDITIONS])
    i_clip = np.mean([clip[c]["impostor_pass"] for c in CONDITIONS])
    print(
        f"| mean | {np.mean([clean[c]['rank1'] for c in CONDITIONS]):.1f} | "
        f"{np.mean([clip[c]['rank1'] for c in CONDITIONS]):.1f} | {loss:.1f} | "
        f"{g_clean:.1f} / {g_clip:.1f} | {i_clean:.2f} / {i_clip:.2f} |"
    )
    done = [p for p in probes if p.clip is not None and p.clean is not None]
    cosines = np.array([float(p.clean @ p.clip) for p in done])  # type: ignore[operator]
    refused = Counter((p.error or "").split(":")[0] for p in probes if p.error)
    visible = sum(p.visible for p in probes if p.error is None)
    kept = sum(p.kept for p in probes if p.error is None)
    lost: Counter[str] = Counter()
    for p in probes:
        lost.update(p.dropped_visible)
    seconds = sum(p.seconds for p in probes)
    clip_seconds = sum(p.visible for p in probes) / 25.0
    if cosines.size:
        print(
            f"\ncosine clean vs clip (same walk): mean {cosines.mean():.3f}, "
            f"p10 {np.percentile(cosines, 10):.3f}, min {cosines.min():.3f}"
        )
    ious = np.array([p.iou for p in done if np.isfinite(p.iou)])
    if ious.size:
        print(
            f"mask IoU vs composited truth (working size): mean {ious.mean():.3f}, "
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
        for p in probes:
            row = {k: v for k, v in asdict(p).items() if k not in ("clean", "clip")}
            row["cosine"] = (
                float(p.clean @ p.clip) if p.clean is not None and p.clip is not None else None
            )
            rows.append(row)
        summary = {"clean": clean, "clip": clip, "threshold": threshold, "model": args.model.name}
        args.out.write_text(json.dumps({"summary": summary, "probes": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
