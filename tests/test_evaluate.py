"""`refscale train` and `refscale eval` end to end on real pairs (tiny configs, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from refscale_model.cli import main
from refscale_model.evaluation.pairs import (
    METHODS,
    METRIC_KEYS,
    EvalPair,
    other_sets_pairs,
    read_eval_pairs,
    set_dir_of,
    shuffled_reference,
)
from refscale_model.training.data import RevisitDataset, split_pairs
from refscale_model.weights import load_weights


def test_split_keeps_validation_places_out_of_training(shared_data: Path) -> None:
    for set_dir in sorted(p for p in shared_data.iterdir() if (p / "pairs.csv").is_file()):
        train, val = split_pairs(set_dir)
        assert val, f"{set_dir.name} has no validation pairs"
        assert not {r.place for r in train} & {r.place for r in val}
        val_images = {r.target for r in val} | {r.reference for r in val}
        assert not val_images & {r.target for r in train}, set_dir.name


def test_dataset_samples_identical_windows(shared_data: Path) -> None:
    data = RevisitDataset(shared_data, ["satellite_spacenet7_monthly"], synthetic_share=0.5, shuffled_share=0.2)
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(30):
        t, r, kind = data.sample(rng, 64)
        assert t.shape == r.shape == (64, 64, 3) and t.dtype == np.uint8
        kinds.add(kind)
    assert kinds == {"real", "synthetic", "shuffled"}


def test_tiny_training_run_lowers_the_loss_and_resumes(shared_data: Path, tmp_path: Path) -> None:
    args = ["train", "--preset", "x2", "--blocks", "2", "--hidden", "8", "--steps", "40", "--batch", "2",
            "--crop", "48", "--sets", "satellite_spacenet7_monthly", "--checkpoint-every", "20",
            "--lr", "1e-3", "--threads", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    totals = [float(line.split(",")[1]) for line in log]
    assert np.mean(totals[-2:]) < np.mean(totals[:2])
    assert (tmp_path / "run" / "final.safetensors").is_file()
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000020.safetensors"
    assert ckpt.is_file() and ckpt.with_suffix(".optim").is_file()
    resumed = args[:-1] + [str(tmp_path / "resumed"), "--resume", str(ckpt)]
    assert main(resumed) == 0
    assert (tmp_path / "resumed" / "final.safetensors").is_file()


def test_time_budget_with_loader_workers_then_init_continues(shared_data: Path, tmp_path: Path) -> None:
    """The lent-GPU recipe: a wall-time budget, crops cut by a spawned worker, then a continued run."""
    args = ["train", "--preset", "x2", "--blocks", "2", "--hidden", "8", "--steps", "100000", "--batch", "2",
            "--crop", "48", "--sets", "satellite_spacenet7_monthly", "--threads", "1", "--workers", "1",
            "--max-seconds", "8", "--smap-tv", "0.01", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert 0 < final["steps"] < 100000
    assert final["config"]["lambda_smap_tv"] == 0.01
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert float(log[-1].split(",")[-1]) < 8 + 5  # stopped at the budget (one step may overrun it)
    cont = ["train", "--init", str(tmp_path / "run" / "final.safetensors"), "--blur-sigma", "1.0", "--smap-pool", "4",
            "--steps", "0", "--batch", "2", "--crop", "48", "--sets", "satellite_spacenet7_monthly", "--threads", "1",
            "--out", str(tmp_path / "cont")]
    assert main(cont) == 0
    cont_cfg = json.loads((tmp_path / "cont" / "final.json").read_text())["config"]
    assert cont_cfg["blocks"] == [2] and cont_cfg["hidden"] == 8 and cont_cfg["blur_sigma"] == 1.0
    assert cont_cfg["smap_pool"] == 4  # a storage setting: the trained weights carry over unchanged
    trained = load_weights(tmp_path / "run" / "final.safetensors").state_dict()
    started = load_weights(tmp_path / "cont" / "final.safetensors").state_dict()
    assert all(torch.equal(trained[k], started[k]) for k in trained)  # from the trained weights, not from scratch


@pytest.mark.parametrize("mode", ["aligned", "shuffled"])
def test_eval_writes_well_formed_report(shared_data: Path, tmp_path: Path, mode: str) -> None:
    report = tmp_path / "report"
    out = tmp_path / "result.json"
    pairs = shared_data / "satellite_spacenet7_monthly" / "pairs.csv"  # references similar enough to pass the gate
    assert main(["eval", "--weights", "x2", "--allow-untrained", "--pairs", str(pairs), "--limit", "2",
                 "--reference-mode", mode, "--json", str(out), "--report", str(report)]) == 0
    result = json.loads(out.read_text())
    assert result["pairs"] == 2 and len(result["rows"]) == 2
    for method in METHODS:
        for key in METRIC_KEYS:
            assert np.isfinite(result["methods"][method][key])
    assert result["methods"]["refscale"]["bytes_per_frame"] > 0
    assert 0.0 <= result["methods"]["refscale"]["smap_mean"] <= 1.0
    if mode == "aligned":
        assert 0 < result["methods"]["refscale"]["smap_bytes"] < result["methods"]["refscale"]["bytes_per_frame"]
    else:  # both pairs show one place, so the references come from other sets (and are gated: no map stored)
        assert all("satellite_spacenet7_monthly" not in r["shuffled_reference"] for r in result["rows"])
        assert 0 <= result["methods"]["refscale"]["smap_bytes"] < result["methods"]["refscale"]["bytes_per_frame"]
    assert (report / "report.md").read_text().count("| refscale |") == 1
    assert (report / "pair_000.png").stat().st_size > 1000
    assert json.loads((report / "results.json").read_text())["methods"].keys() == set(METHODS)


def test_eval_with_registration_records_the_method(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    pairs = shared_data / "satellite_rrssrd" / "pairs.csv"
    assert main(["eval", "--weights", "x2", "--allow-untrained", "--noref-weights", "skip", "--pairs", str(pairs),
                 "--limit", "1", "--register", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["rows"][0]
    assert result["register"] is True
    assert row["registration"] in ("orb", "phase", "identity", "none")
    assert 0.0 <= row["registration_confidence"] <= 1.0
    assert set(result["methods"]) == {"bicubic", "refscale"}


def test_shuffled_references_are_of_another_place(shared_data: Path) -> None:
    """`shuffled` means a reference of another place (issue 3), also for a set whose validation split is one place."""
    for set_name in ("webcam_tilde", "satellite_spacenet7_monthly", "rail_nordland_640"):
        pairs = read_eval_pairs(shared_data / set_name / "pairs.csv", "val")
        pool = other_sets_pairs(set_dir_of(pairs[0]))
        assert pool and all(p.place.split("/")[0] != set_name for p in pool)
        by_reference = {str(p.reference): p.place for p in [*pairs, *pool]}
        for i, pair in enumerate(pairs):
            chosen = shuffled_reference(pairs, i, pool)
            assert by_reference[str(chosen)] != pair.place, (set_name, i)
    single = [EvalPair(Path("a.png"), Path("ref.png"), place="s/one")] * 2
    with pytest.raises(ValueError, match="another place"):
        shuffled_reference(single, 0, [])
