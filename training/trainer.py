"""One training loop for every LMGCS variant and dataset: weighted loss terms, exact resume, DDP.

The loop (``Trainer.fit``): draw the P x K batch of iteration ``i`` (a pure function of the
seed and ``i``), cut the ``data.frames`` windows (degraded as ``data.augment`` says), forward
under bf16 autocast where ``trainer.amp`` puts it (CUDA, and CPUs with bf16 units; fp32
elsewhere), add the weighted loss terms of :mod:`gaitid.training.objective` (kept on the
device: they are copied to the host in one go, only on iterations that log or checkpoint), clip
the gradient norm, step the optimiser at the learning rate of :mod:`gaitid.training.schedule`.
The run ends
when its schedule does:
after ``schedule.iterations``, or, for a wall-time budget (``schedule.minutes`` /
``--max-minutes``), when the training time the budget leaves is spent; either way it then fits
the embedding head, validates (with the open-set calibration) and writes its last checkpoint,
inside the budget. Every ``checkpoint_every`` iterations and at the end the full state is
written atomically: model, optimiser, schedule, sampler position and every RNG (python, numpy,
torch, CUDA; per rank under DDP). Resuming from it replays the same batches, windows and
dropout masks, so the loss sequence of an iteration run equals that of an uninterrupted run
(a budget run follows the clock, so only its schedule position is exact).

DDP is a mode, not a requirement: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is
initialised (NCCL on CUDA, gloo on CPU), each rank takes its slice of every batch and rank 0
logs, evaluates and writes checkpoints. Without ``torchrun`` nothing touches
``torch.distributed``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from numpy.typing import NDArray

from gaitid import __version__
from gaitid.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from gaitid.training.config import InitConfig, TrainConfig
from gaitid.training.objective import compute_loss, to_host
from gaitid.training.run_log import RunLog
from gaitid.training.sampler import PKSampler
from gaitid.training.schedule import RunSchedule, ScheduleError
from gaitid.training.torch_data import TrainBatches, to_model_input

if TYPE_CHECKING:
    from gaitid.model import LMGCS, LMGCSConfig

from gaitid.training.distributed import DistContext, from_rank0, init_distributed
from gaitid.training.setup import (
    TrainingData,
    TrainingError,
    build_optimizer,
    check_resume_compatible,
    load_training_data,
    use_autocast,
)

__all__ = ["TrainResult", "Trainer", "TrainingError"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    iteration: int
    finished: bool  # reached the end of its schedule (False when stopped early)
    last_terms: dict[str, float] = field(default_factory=dict)
    eval_summary: dict[str, float] = field(default_factory=dict)


#: Validation time over its forward passes' time (the two distances over every probe x
#: gallery pair, the report and its heatmaps come on top); measured, see
#: ``Trainer._measure_reserve``.
_VALIDATION_OVERHEAD = 2.4

#: The BNNeck's K-way classifier weight ``[P, D, K]``: one column block per identity.
_CLASSIFIER = "bnneck.classifier.weight"


def _widened(state: dict[str, Any], wide: LMGCSConfig, seed: int) -> dict[str, Any]:
    """``state`` (a one-network checkpoint) with its backbone grown to ``wide``'s inner widths
    (``init.widen``; ``model/widen.py``), its other contents unchanged."""
    from gaitid.model.config import LMGCSConfig
    from gaitid.model.widen import widen_state_dict

    try:
        narrow = LMGCSConfig.model_validate(state["model_config"])
        weights = widen_state_dict(state["model"], narrow, wide, seed=seed)
    except (KeyError, ValueError) as exc:  # WidenError, or a config that does not validate
        raise TrainingError(f"init.widen: {exc}") from exc
    return {**state, "model": weights, "model_config": wide.model_dump()}


def _carried_classifier(
    state: dict[str, Any], fresh: torch.Tensor, label_names: Sequence[str]
) -> torch.Tensor:
    """``fresh`` (this run's randomly initialised classifier weight) with the checkpoint's
    weights for every identity both know, matched by subject id (``init.keep_identities``).

    Continuing a trained network on more people: a wholly new classifier would give every
    identity, the known ones included, a random logit and push large cross-entropy gradients
    into the trained backbone for the first hundreds of iterations; carrying the known rows
    leaves only the new identities to learn.
    """
    known = state.get("labels")
    weight = state["model"].get(_CLASSIFIER)
    if not known or weight is None:
        raise TrainingError(
            "init.keep_identities needs a checkpoint with a classifier and its labels"
        )
    if tuple(weight.shape[:-1]) != tuple(fresh.shape[:-1]):
        raise TrainingError(
            f"init.keep_identities: the checkpoint's classifier is {tuple(weight.shape)}, "
            f"this model's {tuple(fresh.shape)} (another variant?)"
        )
    column = {str(name): i for i, name in enumerate(known)}
    shared = [(j, column[str(n)]) for j, n in enumerate(label_names) if str(n) in column]
    if not shared:
        raise TrainingError(
            "init.keep_identities: this run trains none of the checkpoint's identities"
        )
    carried = fresh.clone()
    for mine, theirs in shared:
        carried[..., mine] = weight[..., theirs].to(carried.dtype)
    logger.info(
        "classifier: %d of %d identities carried from the checkpoint, %d new",
        len(shared),
        len(label_names),
        len(label_names) - len(shared),
    )
    return carried


@dataclass
class _Run:
    """What one call of ``Trainer.fit`` trains with (built by ``Trainer._prepare``)."""

    data: TrainingData
    model: LMGCS
    net: torch.nn.Module  # the model, or its DDP wrapper
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: RunSchedule
    sampler: PKSampler
    log: RunLog
    val: Any  # validation walks on rank 0 (None elsewhere, or without validation)
    start: int  # the iteration it starts after (0, or the resumed checkpoint's)
    amp: bool  # bf16 autocast


def _finite_host_terms(terms: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
    """The loss terms as floats (one host sync), refusing a run whose loss is not finite."""
    values = to_host(terms)
    if not math.isfinite(values["loss_total"]):
        raise TrainingError(f"loss is {values['loss_total']} by iteration {iteration}: {values}")
    return values


def _typical(walks: list[NDArray[np.uint8]], count: int) -> list[NDArray[np.uint8]]:
    """``count`` walks of about the median length (what evaluation batches look like)."""
    order = sorted(range(len(walks)), key=lambda i: walks[i].shape[0])
    middle = max(0, len(order) // 2 - count // 2)
    return [walks[i] for i in order[middle : middle + count]]


def _seconds_per_frame(
    model: torch.nn.Module, walks: list[NDArray[np.uint8]], device: torch.device, shifts: str
) -> float:
    """Seconds per frame of ``torch_features`` with test-time ``shifts`` (the fit runs none,
    validation its own) on ``walks`` as one batch; one untimed pass first, for allocations."""
    from gaitid.training.evaluation.extract import torch_features

    torch_features(model, walks, device=device, batch_size=len(walks), shifts=shifts)
    tick = time.monotonic()
    torch_features(model, walks, device=device, batch_size=len(walks), shifts=shifts)
    return (time.monotonic() - tick) / float(sum(w.shape[0] for w in walks))


class Trainer:
    """Train one network as ``config`` says, writing everything under ``out_dir``."""

    def __init__(self, config: TrainConfig, out_dir: Path) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        # what `_fit_embedding` reports, recorded in the checkpoints written after it
        self.embedding_fit: dict[str, Any] | None = None
        # the run this one continues (``init``): its version and the iterations behind its
        # weights, so a continued model's version counts every iteration it trained, not ours
        self.continued_from: str | None = None
        self.prior_iterations = 0

    # -- setup -------------------------------------------------------------------------------
    def _build_model(self, label_names: Sequence[str], ctx: DistContext) -> LMGCS:
        from gaitid.model import create_model

        cfg = self.config
        model = create_model(cfg.model.variant, num_classes=len(label_names), **cfg.model.overrides)
        if cfg.init is not None:
            meta = self._init_from(model, cfg.init, label_names, seed=cfg.seed)
            self.continued_from = str(meta["version"]) if meta.get("version") else None
            self.prior_iterations = int(meta.get("total_iterations", meta.get("iteration", 0)))
        return model.to(ctx.device)

    @staticmethod
    def _init_from(
        model: LMGCS, init: InitConfig, label_names: Sequence[str], *, seed: int = 0
    ) -> dict[str, Any]:
        """Load earlier weights (a second stage); ``new_modules`` may be absent from them.

        Returns the metadata of the checkpoint they came from (its version and iterations).
        """
        from gaitid.training.ensemble import chosen_network

        try:
            state = chosen_network(load_checkpoint(init.checkpoint), init.member)
        except CheckpointError as exc:
            raise TrainingError(f"init checkpoint {init.checkpoint}: {exc}") from exc
        if init.widen:
            state = _widened(state, model.config, seed)
        names = [n for n, _ in model.named_parameters()]
        top = sorted({n.split(".")[0] for n in names})
        for prefix in [*init.freeze, *init.new_modules]:
            if not any(n.startswith(prefix) for n in names):
                raise TrainingError(
                    f"init prefix {prefix!r} matches no parameter; top-level modules: {top}"
                )
        # weights of new modules are not loaded even when present (a classifier over another
        # set of identities, when fine-tuning the shipped weights on one's own cameras)
        fresh = tuple(init.new_modules)
        weights = {k: v for k, v in state["model"].items() if not k.startswith(fresh)}
        own = model.state_dict()
        if init.keep_identities:
            weights[_CLASSIFIER] = _carried_classifier(state, own[_CLASSIFIER], label_names)
        reshaped = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
        if reshaped:
            raise TrainingError(
                f"init checkpoint {init.checkpoint} has other shapes for {reshaped[:5]} (another "
                "number of identities?): list their modules in init.new_modules, e.g. "
                "bnneck.classifier"
            )
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith(fresh)]
        if missing or unexpected:
            raise TrainingError(
                f"init checkpoint {init.checkpoint} does not fit this model: "
                f"missing {missing[:5]}, "
                f"unexpected {unexpected[:5]} (list new modules in init.new_modules)"
            )
        for name, param in model.named_parameters():
            if init.freeze and name.startswith(tuple(init.freeze)):
                param.requires_grad_(False)
        return dict(state.get("meta") or {})

    def _checkpoint_state(
        self,
        model: LMGCS,
        optimizer: torch.optim.Optimizer,
        schedule: RunSchedule,
        sampler: PKSampler,
        iteration: int,
        data: TrainingData,
        rng: list[Any],
    ) -> dict[str, Any]:
        cfg = self.config
        model_config = model.config.model_dump()
        return {
            "model": model.state_dict(),
            "model_config": model_config,
            "num_classes": len(data.label_names),
            "meta": {
                "name": cfg.name,
                "variant": cfg.model.variant,
                "iteration": iteration,
                # the data folder's name only: checkpoint metadata reaches the ONNX export
                "training_data": (
                    f"{cfg.data.root.name} ({len(data.label_names)} subjects "
                    f"{data.label_names[0]}..{data.label_names[-1]})"
                ),
                # iterations behind these weights, those of the run continued (init) included
                "total_iterations": self.prior_iterations + iteration,
                "version": f"{__version__}+{cfg.name}.it{self.prior_iterations + iteration}",
                **({"continued_from": self.continued_from} if self.continued_from else {}),
                "train_subjects": data.label_names,
                "frames": cfg.data.frames,
                **({"embedding_fit": self.embedding_fit} if self.embedding_fit else {}),
            },
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "sampler": {**sampler.state_dict(), "iteration": iteration},
            "rng": rng,
            "iteration": iteration,
            "config": cfg.model_dump(mode="json"),
            "labels": data.label_names,
        }

    def _write_checkpoint(self, state: dict[str, Any], iteration: int) -> Path:
        last = save_checkpoint(state, self.ckpt_dir / "last.pt")
        keep = self.ckpt_dir / f"iter-{iteration:07d}.pt"
        try:
            if keep.exists():
                keep.unlink()
            os.link(last, keep)  # same bytes, no second write
        except OSError:
            save_checkpoint(state, keep)
        old = sorted(self.ckpt_dir.glob("iter-*.pt"))[: -self.config.trainer.keep_checkpoints]
        for path in old:
            path.unlink(missing_ok=True)
        return last

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to the end of the schedule: its iterations, or its wall-time budget
        (``schedule.minutes``), then fit the embedding head, validate and checkpoint.
        ``stop_after`` pauses earlier with a checkpoint that ``resume=True`` continues."""
        cfg = self.config
        ctx = init_distributed(cfg.device)
        try:
            return self._fit(ctx, resume=resume, stop_after=stop_after)
        except ScheduleError as exc:
            raise TrainingError(str(exc)) from exc
        finally:
            if ctx.world_size > 1:
                import torch.distributed as dist

                dist.destroy_process_group()

    def _fit(self, ctx: DistContext, *, resume: bool, stop_after: int | None) -> TrainResult:
        """The loop. Loss terms stay on the device; they are read (one host sync) only on
        the iterations that log or checkpoint."""
        cfg, started = self.config, time.monotonic()
        run = self._prepare(ctx, resume=resume, started=started)
        schedule = run.schedule
        loader = self._loader(run.data, run.sampler, run.start, ctx)
        bar = self._progress(run.start, schedule, ctx)
        logged: dict[str, float] = {}
        eval_summary: dict[str, float] = {}
        window_start, window_its = time.monotonic(), 0
        iteration, last, paused = run.start, schedule.done(run.start), False
        mark = time.monotonic()
        run.net.train()
        while not (last or paused):
            iteration += 1
            lr = schedule.apply(run.optimizer, iteration - 1)
            frames, labels = next(loader)
            terms = self._step(run, frames, labels, ctx)
            # the time since the previous mark also covers the previous iteration's
            # checkpoint and periodic evaluation: everything but the final fit and validation
            now = time.monotonic()
            schedule.add_time(now - mark)
            mark = now
            if schedule.budgeted and ctx.world_size > 1:
                schedule.trained_s = from_rank0(schedule.trained_s, ctx)
            last = schedule.done(iteration)
            paused = not last and stop_after is not None and iteration >= stop_after
            window_its += 1
            bar.update(1)
            logs = iteration % cfg.trainer.log_every == 0 or last or paused
            save = iteration % cfg.trainer.checkpoint_every == 0 or last or paused
            if logs or save:
                values = _finite_host_terms(terms, iteration)  # never checkpoint a NaN run
            if logs:
                logged = {**values, "lr": lr}
                logged["its_per_s"] = window_its / max(now - window_start, 1e-9)
                logged["progress"] = schedule.progress(iteration)
                window_start, window_its = now, 0
                run.log.train(iteration, logged)
                bar.set_postfix(loss=f"{logged['loss_total']:.4f}", lr=f"{lr:.1e}")
            if last:
                self._fit_embedding(run.model, run.data, ctx)
            if save:
                self._save(
                    run.model, run.optimizer, schedule, run.sampler, iteration, run.data, ctx
                )
                run.log.plot()
            # decided from the config, not from `val` (loaded on rank 0 only): every rank must
            # reach the same barrier
            if run.data.val_subjects and (
                (cfg.trainer.eval_every and iteration % cfg.trainer.eval_every == 0) or last
            ):
                eval_summary = self._evaluate(
                    run.model, run.val, iteration, run.log, ctx, final=last
                )
        bar.close()
        run.log.plot()
        run.log.close()
        if ctx.is_main and last:
            self._write_timing(started, iteration, schedule)
        return TrainResult(
            self.out_dir, self.ckpt_dir / "last.pt", iteration, last, logged, eval_summary
        )

    def _prepare(self, ctx: DistContext, *, resume: bool, started: float) -> _Run:
        """Everything the loop needs: the walks, the network (wrapped for DDP), its
        optimiser and schedule, the sampler, the restored state of a resumed run, the run
        log, the validation walks and, for a wall-time budget, its plan."""
        cfg = self.config
        seed_everything(cfg.seed + ctx.rank)
        data = load_training_data(cfg)
        model = self._build_model(data.label_names, ctx)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, cfg.optimizer)
        schedule = RunSchedule(cfg.schedule, [g["lr"] for g in optimizer.param_groups])
        sampler = PKSampler(
            data.labels,
            cfg.sampler.p,
            cfg.sampler.k,
            seed=cfg.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        start = 0
        if resume:
            start = self._restore(model, optimizer, schedule, sampler, ctx)
        elif ctx.is_main and (self.ckpt_dir / "last.pt").exists():
            raise TrainingError(
                f"{self.ckpt_dir / 'last.pt'} exists: pass --resume to continue it "
                "or choose another --out"
            )
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(
                yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
            )
        log = RunLog(self.out_dir, enabled=ctx.is_main, resume_from=start if resume else None)
        val = self._load_validation(data, ctx)
        if schedule.budgeted and schedule.plan_ is None:
            reserve = self._measure_reserve(model, data, val, ctx)
            plan = schedule.plan(time.monotonic() - started, reserve)
            if ctx.is_main:
                (self.out_dir / "budget.json").write_text(
                    json.dumps({**plan.as_dict(), "reserve_work_s": reserve}, indent=2) + "\n"
                )
        net: torch.nn.Module = model
        if ctx.world_size > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        use_amp = use_autocast(cfg.trainer.amp, ctx.device)
        if ctx.is_main:
            logger.info("training in %s", "bf16 autocast" if use_amp else "fp32")
        return _Run(
            data, model, net, params, optimizer, schedule, sampler, log, val, start, use_amp
        )

    def _step(
        self, run: _Run, frames: torch.Tensor, labels: torch.Tensor, ctx: DistContext
    ) -> dict[str, torch.Tensor]:
        """One optimiser step on one batch; its loss terms, still on the device."""
        silhouettes, lengths = to_model_input(frames, ctx.device)
        labels = labels.to(ctx.device, non_blocking=True)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=run.amp):
            output = run.net(silhouettes, lengths)
        loss = compute_loss(output, labels, self.config.loss)
        run.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        terms = dict(loss.terms)
        if self.config.trainer.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(run.params, self.config.trainer.grad_clip)
            terms["grad_norm"] = norm.detach()
        run.optimizer.step()
        return terms

    def _measure_reserve(
        self, model: LMGCS, data: TrainingData, val: Any, ctx: DistContext
    ) -> float:
        """Seconds the embedding fit and the final validation will take, decided on rank 0
        and shared: one timed forward pass per job, on walks shaped as that job feeds them
        (the fit's middle windows; whole validation walks), priced per frame. Validation
        also computes both distances over every probe x gallery pair and writes its report,
        which brings it to about 2.4 times its forward passes (measured: 165 s in all against
        69 s of forward passes in the 50-minute validation run): ``_VALIDATION_OVERHEAD``."""
        seconds = 0.0
        if ctx.is_main:
            from gaitid.training.embedding_fit import middle_window

            fit = self.config.embedding
            batch = self.config.trainer.eval_batch_size
            lengths = np.array([w.shape[0] for w in data.walks])
            if fit.fit_frames is not None:
                lengths = np.minimum(lengths, fit.fit_frames)
            fit_frames = float(lengths.mean()) * min(fit.fit_walks, len(data.walks))
            sample = [middle_window(w, fit.fit_frames) for w in _typical(data.walks, batch)]
            seconds = fit_frames * _seconds_per_frame(model, sample, ctx.device, "none")
            if val is not None:
                val_frames = float(sum(w.shape[0] for w in val[1]))
                per_frame = _seconds_per_frame(
                    model, _typical(val[1], batch), ctx.device, self.config.trainer.eval_shifts
                )
                seconds += _VALIDATION_OVERHEAD * val_frames * per_frame
            logger.info("the embedding fit and the validation will take about %.0f s", seconds)
        return from_rank0(seconds, ctx) if ctx.world_size > 1 else seconds

    def _write_timing(self, started: float, iteration: int, schedule: RunSchedule) -> None:
        """Where the wall time of this call went (``timing.json``), for the run's records."""
        timing = {
            "iterations": iteration,
            "wall_s_this_call": round(time.monotonic() - started, 1),
            "trained_s": round(schedule.trained_s, 1),
            "plan": schedule.plan_.as_dict() if schedule.plan_ is not None else None,
            "embedding_fit_s": (self.embedding_fit or {}).get("seconds"),
        }
        (self.out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")

    def _progress(self, start: int, schedule: RunSchedule, ctx: DistContext) -> Any:
        from tqdm.auto import tqdm

        # a budget run's length is known in time, not iterations: the bar then counts only
        return tqdm(
            total=None if schedule.budgeted else schedule.config.iterations,
            initial=start,
            desc=self.config.name,
            unit="it",
            dynamic_ncols=True,
            disable=not (ctx.is_main and self.config.trainer.progress),
        )

    def _loader(
        self, data: TrainingData, sampler: PKSampler, start: int, ctx: DistContext
    ) -> Iterator[Any]:
        sampler.iteration = start
        dataset = TrainBatches(
            data.walks, data.labels, self.config.data, seed=self.config.seed, rank=ctx.rank
        )
        workers = self.config.data.workers
        # a private generator: creating the loader iterator draws a base seed from it, and
        # drawing from the global RNG instead would shift dropout masks after a resume
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=workers,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        return iter(loader)

    def _save(
        self,
        model: LMGCS,
        optimizer: torch.optim.Optimizer,
        schedule: RunSchedule,
        sampler: PKSampler,
        iteration: int,
        data: TrainingData,
        ctx: DistContext,
    ) -> None:
        rng = capture_rng_state()
        if ctx.world_size > 1:
            import torch.distributed as dist

            states: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if ctx.is_main:
            state = self._checkpoint_state(
                model, optimizer, schedule, sampler, iteration, data, states
            )
            self._write_checkpoint(state, iteration)
        if ctx.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: RunSchedule,
        sampler: PKSampler,
        ctx: DistContext,
    ) -> int:
        path = self.ckpt_dir / "last.pt"
        try:
            state = load_checkpoint(path, for_resume=True)
        except CheckpointError as exc:
            raise TrainingError(f"--resume: {exc}") from exc
        check_resume_compatible(state["config"], self.config)
        if len(state["rng"]) != ctx.world_size:
            raise TrainingError(
                f"{path} was written by {len(state['rng'])} processes; resume with the same "
                f"number (now {ctx.world_size}) for an exact continuation"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        restore_rng_state(state["rng"][ctx.rank])
        logger.info("resumed %s at iteration %d", path, state["iteration"])
        return int(state["iteration"])

    def _fit_embedding(self, model: LMGCS, data: TrainingData, ctx: DistContext) -> None:
        """Fit the service embedding on the training walks (rank 0), then share it.

        Runs once, after the last iteration and before the final checkpoint and validation,
        so both hold the fitted head (``training.embedding_fit``).
        """
        from gaitid.training.embedding_fit import fit_embedding

        head = model.embedding_head
        if ctx.is_main:
            summary = fit_embedding(
                model,
                data.walks,
                data.labels,
                device=ctx.device,
                max_walks=self.config.embedding.fit_walks,
                max_frames=self.config.embedding.fit_frames,
                regularization=self.config.embedding.regularization,
                seed=self.config.seed,
                batch_size=self.config.trainer.eval_batch_size,
            )
            self.embedding_fit = summary
            (self.out_dir / "embedding_fit.json").write_text(json.dumps(summary, indent=2) + "\n")
        if ctx.world_size > 1:
            import torch.distributed as dist

            mean, weight = head.mean.clone(), head.weight.clone()
            dist.broadcast(mean, src=0)
            dist.broadcast(weight, src=0)
            if not ctx.is_main:
                head.set_reduction(mean, weight)

    # -- validation --------------------------------------------------------------------------
    def _calibrate(self, features: Any) -> None:
        """The open-set figures and default threshold of the final model on the validation
        subjects (``eval/calibration.json``; what ``gaitid export --threshold-from`` reads)."""
        from gaitid.training.evaluation.open_set import calibrate, write_calibration
        from gaitid.training.evaluation.protocols import ProtocolError

        try:
            result = calibrate(features)
        except ProtocolError as exc:  # too few validation subjects or conditions: say so
            logger.warning("no open-set calibration: %s", exc)
            return
        write_calibration(
            result,
            self.out_dir / "eval",
            model="checkpoints/last.pt",
            shifts=self.config.trainer.eval_shifts,
        )
        logger.info(
            "threshold %.4f at FMR <= %g (FNMR %.3f); DIR at FAR 1%%: %s",
            result.threshold,
            result.target_fmr,
            result.at_threshold["identity"]["fnmr"],
            {k: round(v, 1) for k, v in result.open_set["dir"].items()},
        )

    def _load_validation(self, data: TrainingData, ctx: DistContext) -> Any:
        if not data.val_subjects or not ctx.is_main:
            return None
        from gaitid.training.evaluation.extract import load_eval_walks

        return load_eval_walks(self.config.data.root, data.val_subjects)

    def _evaluate(
        self,
        model: torch.nn.Module,
        val: Any,
        iteration: int,
        log: RunLog,
        ctx: DistContext,
        *,
        final: bool,
    ) -> dict[str, float]:
        summary: dict[str, float] = {}
        if ctx.is_main and val is not None:
            from gaitid.training.evaluation.extract import features_from_torch
            from gaitid.training.evaluation.protocols import CrossViewResult, run_protocol
            from gaitid.training.evaluation.report import write_report

            keys, walks = val
            if not final and self.config.trainer.eval_frames is not None:
                from gaitid.training.embedding_fit import middle_window

                walks = [middle_window(w, self.config.trainer.eval_frames) for w in walks]
            features = features_from_torch(
                model,
                keys,
                walks,
                device=ctx.device,
                batch_size=self.config.trainer.eval_batch_size,
                shifts=self.config.trainer.eval_shifts,
            )
            results = run_protocol(features, self.config.trainer.eval_protocol)
            for r in results:
                if isinstance(r, CrossViewResult):
                    tag = f"{r.distance}{'_matched' if r.exclude_unmatched else ''}"
                    summary.update({f"{tag}_{k}": v for k, v in r.mean.items()})
                else:
                    summary.update(
                        {
                            f"{r.distance}_{k}": float(v)
                            for k, v in r.metrics.items()
                            if not k.startswith("num_")
                        }
                    )
            log.eval(iteration, summary)
            logger.info("iteration %d validation: %s", iteration, summary)
            if final:
                self._calibrate(features)
                write_report(
                    results,
                    self.out_dir / "eval",
                    {
                        "protocol": self.config.trainer.eval_protocol,
                        "data": (
                            f"{self.config.data.root} subjects "
                            f"{sorted(set(features.subjects.tolist()))}"
                        ),
                        "model": str(self.ckpt_dir / "last.pt"),
                        "iteration": iteration,
                    },
                )
        if ctx.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return summary
