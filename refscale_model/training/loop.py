"""Training loop (paper §4.1 settings as defaults): Adam 2e-4 with step decay, batch 8, 128² crops.

A run directory holds `train_config.json`, `log.csv`, `checkpoints/` (safetensors, resumable)
and `final.safetensors` + sidecar. Deterministic for a given seed on a given device with
`workers=0` and no `max_seconds`; a time budget (`max_seconds`, for a lent GPU's fixed minutes)
makes the number of steps depend on the machine, and loader workers draw from their own seeds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from refscale_model.config import RefScaleConfig
from refscale_model.models.refscale import RefScale
from refscale_model.training.codec_loop import draw_codecs
from refscale_model.training.data import RevisitDataset, default_data_root
from refscale_model.training.losses import compute_losses
from refscale_model.weights import load_weights, save_weights


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: RefScaleConfig.preset("x2").to_dict())
    steps: int = 10000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    """Fractions of `steps` at which the learning rate halves."""
    grad_clip: float = 10.0
    seed: int = 0
    synthetic_share: float = 0.3
    shuffled_share: float = 0.1
    capture_share: float = 0.0
    """Share of samples drawn under a night / glare / saturated capture condition (`training.capture`)."""
    noref_share: float = 0.1
    """Share of samples trained with S_map = 0 (the no-reference fallback of the same network)."""
    z_sample_share: float = 0.0
    """Share of steps whose HR loss rebuilds with z ~ N(0, 1) instead of z = 0 (inference default)."""
    sets: list[str] = field(default_factory=list)
    data_root: str = ""
    checkpoint_every: int = 1000
    device: str = "cpu"
    threads: int = 0
    max_seconds: float = 0.0
    """Stop after this much wall time (0: run all `steps`); the learning-rate schedule then follows
    whichever of steps and time is further along."""
    workers: int = 0
    """Background processes cutting crops (0: in the training process, fully deterministic)."""
    codecs: list[str] = field(default_factory=list)
    """Lossy LR codecs run in the forward pass, one drawn per sample (`training.codec_loop`); empty: PNG."""
    codec_quality: tuple[int, int] = (20, 95)
    """Closed range the per-sample codec quality is drawn from (uniform)."""
    decoder_lr_mult: float = 1.0
    """Learning-rate multiplier of the decoder-side networks: they start from zero while the INN fine-tunes."""
    tf32: bool = False
    """Let CUDA convolutions and matmuls run in TF32 (10-bit mantissa). Off by default so a GPU run
    trains the same fp32 function the CPU evaluates; measured on an H100: no quality difference
    (x2-noref, 12,000 steps: 42.12 vs 42.05 dB on Nordland 640) and no speed gain for these small,
    launch-bound networks (12,000 steps: 329 s with TF32, 302 s without, side by side)."""


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""uint8 HR crops, uint8 reference crops (N×3×crop×crop) and the float keep mask (N×1×1×1)."""


class BatchStream(torch.utils.data.IterableDataset):
    """Endless uint8 batches (HR crops, reference crops, keep mask) drawn from a `RevisitDataset`.

    Each loader worker draws from its own generator seeded by (seed, worker id), so a GPU is not
    left waiting for crops cut on one CPU core.
    """

    def __init__(self, dataset: RevisitDataset, cfg: TrainConfig, seed: int) -> None:
        self.dataset = dataset
        self.cfg = cfg
        self.seed = seed

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            cv2.setNumThreads(1)
            torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield draw_batch(self.dataset, self.cfg, rng)


def draw_batch(dataset: RevisitDataset, cfg: TrainConfig, rng: np.random.Generator) -> Batch:
    """One batch as uint8 N×3×crop×crop tensors plus the float keep mask (0: trained without reference)."""
    targets, refs, keep = [], [], []
    for _ in range(cfg.batch):
        t, r, _kind = dataset.sample(rng, cfg.crop)
        targets.append(t)
        refs.append(r)
        keep.append(0.0 if rng.random() < cfg.noref_share else 1.0)
    hr = torch.from_numpy(np.stack(targets)).permute(0, 3, 1, 2).contiguous()
    ref = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).contiguous()
    return hr, ref, torch.tensor(keep).view(-1, 1, 1, 1)


def _batches(dataset: RevisitDataset, cfg: TrainConfig, rng: np.random.Generator, start: int) -> Iterator[Batch]:
    """In-process batches from the run's own generator (resumable), or a loader with workers."""
    if cfg.workers == 0:
        while True:
            yield draw_batch(dataset, cfg, rng)
    loader = torch.utils.data.DataLoader(
        BatchStream(dataset, cfg, seed=cfg.seed * 1_000_003 + start),
        batch_size=None,
        num_workers=cfg.workers,
        pin_memory=cfg.device.startswith("cuda"),
        prefetch_factor=4,
        persistent_workers=True,
        multiprocessing_context="spawn",  # a forked child deadlocks in OpenCV's thread pool
    )
    yield from loader


def _save_optimizer(opt: torch.optim.Optimizer, path: Path, step: int, rng: np.random.Generator) -> None:
    state = opt.state_dict()
    tensors = {
        f"state.{idx}.{key}": value.detach().cpu().contiguous().reshape(-1) if value.dim() == 0 else value.cpu()
        for idx, entry in state["state"].items()
        for key, value in entry.items()
    }
    tensors["torch_rng"] = torch.get_rng_state()
    meta = {
        "param_groups": json.dumps(state["param_groups"]),
        "step": str(step),
        "numpy_rng": json.dumps(rng.bit_generator.state),
    }
    save_file(tensors, str(path), metadata=meta)


def _load_optimizer(opt: torch.optim.Optimizer, path: Path, rng: np.random.Generator) -> int:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if not name.startswith("state."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value.reshape(()) if key == "step" else value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["torch_rng"])
    rng.bit_generator.state = json.loads(meta["numpy_rng"])
    return int(meta["step"])


def run_fraction(cfg: TrainConfig, step: int, elapsed: float) -> float:
    """How far the run is, 0..1: by steps, or by wall time when that budget is further along."""
    done = step / cfg.steps
    if cfg.max_seconds > 0:
        done = max(done, elapsed / cfg.max_seconds)
    return min(done, 1.0)


def learning_rate(cfg: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    passed = sum(run_fraction(cfg, step, elapsed) >= m for m in cfg.lr_milestones)
    return cfg.lr * 0.5**passed


def train(
    cfg: TrainConfig, run_dir: Path, resume: Path | None = None, progress: bool = True, init: Path | None = None
) -> Path:
    """Train one model; returns the path of `final.safetensors`.

    `resume` continues a checkpoint exactly (weights, optimizer, generator, step); `init` only
    starts from trained weights of the same architecture (fresh optimizer and schedule), e.g. to
    continue a finished run for a further time budget.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    model_cfg = RefScaleConfig.from_dict(cfg.model)
    if model_cfg.noref_fallback:
        raise ValueError("noref_fallback is set when shipping (tools/attach_noref_fallback.py); "
                         "train the reference model and its no-reference INN as two runs")
    model = load_weights(resume) if resume else RefScale(model_cfg)
    if init and not resume:  # a shipped model's attached fallback INN is not part of what trains
        init_state = load_weights(init).state_dict()
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in init_state.items() if not k.startswith("fallback.")}, strict=False
        )
        decoder_side = ("lr_restore.", "hr_refine.")  # new decoder-side networks start from their zero init
        if unexpected or any(not k.startswith(decoder_side) for k in missing):
            raise ValueError(f"--init weights do not fit: missing {missing}, unexpected {unexpected}")
    model = model.to(device).train()
    decoder_params = [p for n, p in model.named_parameters() if n.startswith(("lr_restore.", "hr_refine."))]
    decoder_ids = {id(p) for p in decoder_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in decoder_ids], "lr_mult": 1.0}]
    if decoder_params:
        groups.append({"params": decoder_params, "lr_mult": cfg.decoder_lr_mult})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
    start = _load_optimizer(opt, Path(str(resume).replace(".safetensors", ".optim")), rng) if resume else 0
    data_root = Path(cfg.data_root) if cfg.data_root else default_data_root()
    dataset = RevisitDataset(
        data_root, cfg.sets or None, synthetic_share=cfg.synthetic_share, shuffled_share=cfg.shuffled_share,
        capture_share=cfg.capture_share,
    )
    log_path = run_dir / "log.csv"
    new_log = not log_path.exists() or start == 0
    log_fh = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(log_fh)
    if new_log:
        log.writerow(["step", "total", "hr", "lr", "distr", "learning_rate", "seconds"])
    t0 = time.time()
    batches = _batches(dataset, cfg, rng, start)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc=run_dir.name)
    step = start
    for step in bar:
        elapsed = time.time() - t0
        if cfg.max_seconds > 0 and elapsed >= cfg.max_seconds:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, elapsed) * group.get("lr_mult", 1.0)
        hr_u8, ref_u8, keep = next(batches)
        hr = hr_u8.to(device, non_blocking=True).float().div_(255)
        ref = ref_u8.to(device, non_blocking=True).float().div_(255)
        keep = keep.to(device, non_blocking=True)
        sample_z = bool(rng.random() < cfg.z_sample_share)
        draws = draw_codecs(rng, hr.shape[0], cfg.codecs, cfg.codec_quality) if cfg.codecs else None
        terms = compute_losses(model, hr, ref if model_cfg.use_reference else None, keep=keep, sample_z=sample_z,
                               codec_draws=draws)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            values = terms.as_floats()  # reading the loss waits for the GPU: only every 10th step
            bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
            log.writerow([step, *(f"{values[k]:.6f}" for k in ("total", "hr", "lr", "distr")),
                          f"{opt.param_groups[0]['lr']:.2e}", f"{time.time() - t0:.1f}"])
            log_fh.flush()
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            ckpt = run_dir / "checkpoints" / f"step_{step + 1:07d}.safetensors"
            save_weights(model.eval(), ckpt, extra={"step": step + 1})
            _save_optimizer(opt, ckpt.with_suffix(".optim"), step + 1, rng)
            model.train()
    else:
        step = cfg.steps
    log_fh.close()
    final = run_dir / "final.safetensors"
    save_weights(
        model.eval().cpu(),
        final,
        extra={"steps": step, "batch": cfg.batch, "crop": cfg.crop, "wall_seconds": round(time.time() - t0, 1)},
    )
    return final
