"""Training loop (paper §4.1 settings as defaults): Adam 2e-4 with step decay, batch 8, 128² crops.

A run directory holds `train_config.json`, `log.csv`, `checkpoints/` (safetensors, resumable)
and `final.safetensors` + sidecar. Deterministic for a given seed on a given device.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from refscale_model.config import RefScaleConfig
from refscale_model.data import RevisitDataset, default_data_root
from refscale_model.losses import compute_losses
from refscale_model.model import RefScale
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
    noref_share: float = 0.1
    """Share of samples trained with S_map = 0 (the no-reference fallback of the same network)."""
    z_sample_share: float = 0.0
    """Share of steps whose HR loss rebuilds with z ~ N(0, 1) instead of z = 0 (inference default)."""
    sets: list[str] = field(default_factory=list)
    data_root: str = ""
    checkpoint_every: int = 1000
    device: str = "cpu"
    threads: int = 0


def _batch(
    dataset: RevisitDataset, cfg: TrainConfig, rng: np.random.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    targets, refs, keep = [], [], []
    for _ in range(cfg.batch):
        t, r, _kind = dataset.sample(rng, cfg.crop)
        targets.append(t)
        refs.append(r)
        keep.append(0.0 if rng.random() < cfg.noref_share else 1.0)
    hr = torch.from_numpy(np.stack(targets)).permute(0, 3, 1, 2).float().div(255)
    ref = torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float().div(255)
    return hr.to(device), ref.to(device), torch.tensor(keep).view(-1, 1, 1, 1).to(device)


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


def learning_rate(cfg: TrainConfig, step: int) -> float:
    passed = sum(step >= m * cfg.steps for m in cfg.lr_milestones)
    return cfg.lr * 0.5**passed


def train(cfg: TrainConfig, run_dir: Path, resume: Path | None = None, progress: bool = True) -> Path:
    """Train one model; returns the path of `final.safetensors`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device)
    model_cfg = RefScaleConfig.from_dict(cfg.model)
    model = load_weights(resume) if resume else RefScale(model_cfg)
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    start = _load_optimizer(opt, Path(str(resume).replace(".safetensors", ".optim")), rng) if resume else 0
    data_root = Path(cfg.data_root) if cfg.data_root else default_data_root()
    dataset = RevisitDataset(
        data_root, cfg.sets or None, synthetic_share=cfg.synthetic_share, shuffled_share=cfg.shuffled_share
    )
    log_path = run_dir / "log.csv"
    new_log = not log_path.exists() or start == 0
    log_fh = open(log_path, "w" if new_log else "a", newline="")
    log = csv.writer(log_fh)
    if new_log:
        log.writerow(["step", "total", "hr", "lr", "distr", "learning_rate", "seconds"])
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc=run_dir.name)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        hr, ref, keep = _batch(dataset, cfg, rng, device)
        sample_z = bool(rng.random() < cfg.z_sample_share)
        terms = compute_losses(model, hr, ref if model_cfg.use_reference else None, keep=keep, sample_z=sample_z)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        values = terms.as_floats()
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})
        if step % 10 == 0 or step == cfg.steps - 1:
            log.writerow([step, *(f"{values[k]:.6f}" for k in ("total", "hr", "lr", "distr")),
                          f"{group['lr']:.2e}", f"{time.time() - t0:.1f}"])
            log_fh.flush()
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            ckpt = run_dir / "checkpoints" / f"step_{step + 1:07d}.safetensors"
            save_weights(model.eval(), ckpt, extra={"step": step + 1})
            _save_optimizer(opt, ckpt.with_suffix(".optim"), step + 1, rng)
            model.train()
    log_fh.close()
    final = run_dir / "final.safetensors"
    save_weights(
        model.eval().cpu(),
        final,
        extra={"steps": cfg.steps, "batch": cfg.batch, "crop": cfg.crop, "wall_seconds": round(time.time() - t0, 1)},
    )
    return final
