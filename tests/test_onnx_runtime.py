"""ONNX export + onnxruntime (CPU provider) against the PyTorch model, on real image pairs.

Parity criterion (issue 4): ONNX `lr` and `smap` equal PyTorch's in >= 99.9 % of values with max
difference 1, and the PyTorch inverse rebuilds HR from the ONNX outputs within 0.1 dB PSNR of the
all-PyTorch path. Models are the shipped configs with every parameter perturbed (zero-initialised
couplings would otherwise make the flow a plain Haar transform).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO_ROOT, load_pair

from refscale_model import RefScale, RefScaleConfig, load_model, save_weights
from refscale_model.backends.onnx_export import check_pairing, export_onnx, read_onnx_metadata
from refscale_model.backends.onnx_runtime import (
    CPU,
    OnnxDownscaler,
    default_providers,
    feat_path,
    noref_path,
    smap_path,
)
from refscale_model.backends.torch_backend import TorchDownscaler
from refscale_model.cli import main as cli_main
from refscale_model.metrics import psnr
from refscale_model.pipeline import Downscaler, ModelInfo

SMALL = {"hidden": 8, "encoder_channels": 8}


def perturbed(config: RefScaleConfig, seed: int = 0, amount: float = 0.05) -> RefScale:
    torch.manual_seed(seed)
    model = RefScale(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount * torch.randn_like(p))
    return model.eval()


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    assert a.shape == b.shape and a.dtype == np.uint8 and b.dtype == np.uint8
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((diff == 0).mean()), int(diff.max())


def assert_parity(got: tuple[np.ndarray, np.ndarray | None], want: tuple[np.ndarray, np.ndarray | None]) -> None:
    same, worst = agreement(got[0], want[0])
    assert same >= 0.999 and worst <= 1, f"lr: {same:.5f} equal, max diff {worst}"
    assert (got[1] is None) == (want[1] is None)
    if got[1] is not None and want[1] is not None:
        same, worst = agreement(got[1], want[1])
        assert same >= 0.999 and worst <= 1, f"smap: {same:.5f} equal, max diff {worst}"


def rebuild(
    model: RefScale, lr: np.ndarray, smap: np.ndarray | None, ref: np.ndarray | None, size: tuple[int, int]
) -> np.ndarray:
    """The offboard PyTorch inverse on numpy outputs -> uint8 HWC."""
    lr_t = torch.from_numpy(lr).permute(2, 0, 1)[None]
    smap_t = None if smap is None else torch.from_numpy(smap)[None, None]
    ref_t = None if ref is None else torch.from_numpy(ref).permute(2, 0, 1)[None]
    hr = model.upscale(lr_t, smap_t, ref_t, size)
    return torch.round(hr[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()


def assert_rebuilds_alike(
    model: RefScale, got: tuple[np.ndarray, np.ndarray | None], want: tuple[np.ndarray, np.ndarray | None],
    hr: np.ndarray, ref: np.ndarray,
) -> None:
    """ONNX and PyTorch outputs agree, and each rebuilds the frame to within 0.1 dB of the other."""
    assert_parity(got, want)
    size = hr.shape[:2]
    psnr_onnx = psnr(rebuild(model, got[0], got[1], ref, size), hr)
    psnr_torch = psnr(rebuild(model, want[0], want[1], ref, size), hr)
    assert abs(psnr_onnx - psnr_torch) <= 0.1, (psnr_onnx, psnr_torch)


@pytest.fixture(scope="module")
def x2(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[RefScale, OnnxDownscaler, Path]:
    """Default x2 architecture, saved as real safetensors, exported through the CLI."""
    root = tmp_path_factory.mktemp("onnx_x2")
    weights = root / "x2_test.safetensors"
    save_weights(perturbed(RefScaleConfig.preset("x2")), weights)
    out = root / "x2.onnx"
    assert cli_main(["export-onnx", "--weights", str(weights), "--out", str(out)]) == 0
    model = load_model(weights)
    return model, OnnxDownscaler(out, providers=[CPU]), out


@pytest.fixture(scope="module")
def x4(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefScale, OnnxDownscaler]:
    model = perturbed(RefScaleConfig.preset("x4"), seed=1)
    out = export_onnx(model, tmp_path_factory.mktemp("onnx_x4") / "x4.onnx", model_id="x4").path
    return model, OnnxDownscaler(out, providers=[CPU])


@pytest.fixture(scope="module")
def webcam_crop(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    hr, ref = load_pair("webcam_tilde", 0)
    return np.ascontiguousarray(hr[100:292, 200:456]), np.ascontiguousarray(ref[100:292, 200:456])


@pytest.fixture(scope="module")
def odd_frame(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI-like 1242×375 frame (H odd, W not a multiple of 4) from a real 1080p revisit pair."""
    hr, ref = load_pair("rail_nordland_1080p", 5)
    return np.ascontiguousarray(hr[400:775, 300:1542]), np.ascontiguousarray(ref[400:775, 300:1542])


# ----------------------------------------------------------------------------- export
def test_export_writes_checked_graphs_with_pairing_metadata(x2: tuple[RefScale, OnnxDownscaler, Path]) -> None:
    model, runtime, path = x2
    graphs = {"ref": path, "smap": smap_path(path), "noref": noref_path(path), "feat": feat_path(path)}
    for graph, p in graphs.items():
        onnx.checker.check_model(str(p), full_check=True)
        meta = read_onnx_metadata(p)
        assert meta["graph"] == graph
        assert meta["weights_sha256"] == model.weights_sha256 and len(meta["weights_sha256"]) == 64
        assert json.loads(meta["config"]) == model.config.to_dict()
        assert meta["model_id"] == "x2_test.safetensors" and meta["version"]
    io = {
        "ref": (["hr", "fref", "smap"], ["lr"]),
        "smap": (["hr", "fref"], ["smap"]),
        "noref": (["hr"], ["lr"]),
        "feat": (["ref"], ["fref"]),
    }
    for graph, p in graphs.items():
        proto = onnx.load(str(p), load_external_data=False)
        assert ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output]) == io[graph]
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["N", 3, "H", "W"]
    assert runtime.weights_sha256 == model.weights_sha256
    assert runtime.model_info() == ModelInfo.of(model, "x2_test.safetensors")
    check_pairing(runtime.metadata, model)
    with pytest.raises(ValueError, match="weights"):
        check_pairing(runtime.metadata, perturbed(RefScaleConfig.preset("x2"), seed=5))


def test_onnx_info_cli_checks_pairing(x2: tuple[RefScale, OnnxDownscaler, Path], tmp_path: Path) -> None:
    _, _, path = x2
    other = tmp_path / "other.safetensors"
    save_weights(perturbed(RefScaleConfig.preset("x2"), seed=7), other)
    assert cli_main(["onnx-info", str(path)]) == 0
    assert cli_main(["onnx-info", str(path), "--weights", str(other)]) == 2


def test_runtime_refuses_old_layouts_and_foreign_side_graphs(
    x2: tuple[RefScale, OnnxDownscaler, Path], tmp_path: Path
) -> None:
    """A graph of the old layout (map computed inside the ref graph) or a side graph of other
    weights is refused at start with a clear error, never run against the wrong contract."""
    _, _, path = x2
    for p in (path, smap_path(path), noref_path(path), feat_path(path)):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    copy = tmp_path / path.name
    for fmt in ("refscale-onnx/1", "refscale-onnx/2"):  # 2: Ref-Net on the reference inside two graphs
        old = onnx.load(str(copy))
        next(e for e in old.metadata_props if e.key == "refscale.format").value = fmt
        onnx.save(old, str(tmp_path / "old.onnx"))
        with pytest.raises(ValueError, match="re-export"):
            OnnxDownscaler(tmp_path / "old.onnx", providers=[CPU])
    other = export_onnx(perturbed(RefScaleConfig.preset("x2"), seed=3), tmp_path / "other" / "x2.onnx")
    assert other.smap_path is not None
    smap_path(copy).write_bytes(other.smap_path.read_bytes())
    with pytest.raises(ValueError, match="not the smap graph"):
        OnnxDownscaler(copy, providers=[CPU])
    smap_path(copy).unlink()
    with pytest.raises(FileNotFoundError, match="smap graph"):
        OnnxDownscaler(copy, providers=[CPU])
    smap_path(copy).write_bytes(smap_path(path).read_bytes())
    assert other.feat_path is not None
    feat_path(copy).write_bytes(other.feat_path.read_bytes())
    with pytest.raises(ValueError, match="not the feat graph"):
        OnnxDownscaler(copy, providers=[CPU])


# ----------------------------------------------------------------------------- parity on real pairs
def test_runtime_satisfies_the_downscaler_protocol(x2: tuple[RefScale, OnnxDownscaler, Path]) -> None:
    assert isinstance(x2[1], Downscaler)


def test_x2_parity_and_rebuild_on_a_real_pair(
    x2: tuple[RefScale, OnnxDownscaler, Path], webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    model, runtime, _ = x2
    hr, ref = webcam_crop
    got, want = runtime.downscale(hr, ref), TorchDownscaler(model).downscale(hr, ref)
    assert got[0].shape == (96, 128, 3) and got[1] is not None and got[1].shape == (12, 16)  # 16×16-px cells
    assert_rebuilds_alike(model, got, want, hr, ref)


def test_features_graph_parity_and_reuse(
    x2: tuple[RefScale, OnnxDownscaler, Path], odd_frame: tuple[np.ndarray, np.ndarray]
) -> None:
    """`fref` is PyTorch's Ref-Net features of the padded reference, and downscaling with features
    computed once gives exactly what `downscale(hr, ref)` gives, frame after frame."""
    model, runtime, _ = x2
    hr, ref = odd_frame
    fref = runtime.reference_features(ref)
    with torch.no_grad():
        want = model.encoder.features(model.pad(torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255))
    assert fref.shape == tuple(want.shape) == runtime.feature_shape(hr.shape[:2]) and fref.dtype == np.float32
    assert np.abs(fref - want.numpy()).max() < 1e-4
    direct = runtime.downscale(hr, ref)
    for frame in (hr, hr):
        again = runtime.downscale_with_features(frame, fref)
        assert np.array_equal(again[0], direct[0]) and again[1] is not None and direct[1] is not None
        assert np.array_equal(again[1], direct[1])
    assert_rebuilds_alike(model, direct, TorchDownscaler(model).downscale(hr, ref), hr, ref)
    with pytest.raises(ValueError, match="do not fit"):
        runtime.downscale_with_features(np.ascontiguousarray(hr[:200]), fref)


def test_smap_parity_with_an_unrelated_reference(
    x2: tuple[RefScale, OnnxDownscaler, Path], webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    """Another place as the reference spreads S_map over many levels, so its rounding is really tested."""
    model, runtime, _ = x2
    hr = webcam_crop[0]
    other, _ = load_pair("walk_gardenspoint_sfu", 0)
    ref = np.ascontiguousarray(other[:192, :256])
    got, want = runtime.downscale(hr, ref), TorchDownscaler(model).downscale(hr, ref)
    assert got[1] is not None and np.unique(got[1]).size >= 3
    assert_parity(got, want)


def test_gate_in_the_graph(tmp_path: Path, webcam_crop: tuple[np.ndarray, np.ndarray]) -> None:
    """The exported graph gates like PyTorch: an unrelated reference gives an all-zero map and the
    no-reference LR; the reference itself stays ungated."""
    model = load_model("x2")  # a trained encoder: an untrained one finds any two natural images similar
    model.config = dataclasses.replace(model.config, smap_gate=0.5)
    runtime = OnnxDownscaler(export_onnx(model, tmp_path / "gated.onnx", model_id="gated").path, providers=[CPU])
    hr = webcam_crop[0]
    other, _ = load_pair("walk_gardenspoint_sfu", 0)
    unrelated = np.ascontiguousarray(other[:192, :256])
    got, want = runtime.downscale(hr, unrelated), TorchDownscaler(model).downscale(hr, unrelated)
    assert got[1] is not None and not got[1].any() and not want[1].any()
    assert_parity(got, want)
    assert_parity((got[0], None), runtime.downscale(hr, None))
    itself = runtime.downscale(hr, hr)[1]
    assert itself is not None and itself.min() > 0


def test_runtime_recodes_only_the_gated_frames_of_a_batch(
    tmp_path: Path, webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    """With the shipped fallback, a gated frame's LR is the no-ref INN's; its neighbour keeps its reference."""
    model = load_model("x2")
    model.config = dataclasses.replace(model.config, smap_gate=0.5)
    assert model.fallback is not None
    runtime = OnnxDownscaler(export_onnx(model, tmp_path / "gated.onnx", model_id="gated").path, providers=[CPU])
    hr = webcam_crop[0]
    other, _ = load_pair("walk_gardenspoint_sfu", 0)
    refs = (np.ascontiguousarray(other[:192, :256]), hr)  # frame 0: unrelated (gated), frame 1: itself
    frames_nchw = np.ascontiguousarray(np.stack([hr, hr]).transpose(0, 3, 1, 2))
    refs_nchw = np.ascontiguousarray(np.stack(refs).transpose(0, 3, 1, 2))
    lr, smap = runtime.run_nchw(frames_nchw, refs_nchw)
    assert smap is not None and not smap[0].any() and smap[1].min() > 0
    for i, ref in enumerate(refs):
        assert_parity((lr[i].transpose(1, 2, 0), smap[i, 0]), TorchDownscaler(model).downscale(hr, ref))
    noref_lr, _ = TorchDownscaler(load_model("x2-noref")).downscale(hr, None)
    assert_parity((lr[0].transpose(1, 2, 0), None), (noref_lr, None))


def test_no_reference_graph(
    x2: tuple[RefScale, OnnxDownscaler, Path], webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    model, runtime, _ = x2
    hr = webcam_crop[0]
    got, want = runtime.downscale(hr, None), TorchDownscaler(model).downscale(hr, None)
    assert got[1] is None
    assert_parity(got, want)
    with_ref = runtime.downscale(hr, webcam_crop[1])[0]
    assert agreement(got[0], with_ref)[0] < 0.999  # the reference really conditions the ref graph


@pytest.mark.parametrize("which", ["x2", "x4"])
def test_odd_frame_size_through_dynamic_axes(
    which: str,
    x2: tuple[RefScale, OnnxDownscaler, Path],
    x4: tuple[RefScale, OnnxDownscaler],
    odd_frame: tuple[np.ndarray, np.ndarray],
) -> None:
    model, runtime = (x2[0], x2[1]) if which == "x2" else x4
    hr, ref = odd_frame
    assert hr.shape == (375, 1242, 3)
    got, want = runtime.downscale(hr, ref), TorchDownscaler(model).downscale(hr, ref)
    s, ph, pw = model.config.scale, *model.padded_size((375, 1242))
    assert got[0].shape == (ph // s, pw // s, 3) and got[1] is not None
    assert got[1].shape == model.config.smap_grid((ph, pw))
    assert_rebuilds_alike(model, got, want, hr, ref)


def test_batches_sizes_and_buffer_reuse(
    x2: tuple[RefScale, OnnxDownscaler, Path], webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    """Outputs handed out survive later frames (buffers are reused), sizes can change, N is dynamic."""
    model, runtime, _ = x2
    hr, ref = webcam_crop
    first = runtime.downscale(hr, ref)
    kept = (first[0].copy(), first[1].copy())
    small = runtime.downscale(np.ascontiguousarray(hr[:61, :97]), np.ascontiguousarray(ref[:61, :97]))
    assert small[0].shape == (32, 50, 3) and small[1] is not None and small[1].shape == (4, 7)  # partial edge cells
    runtime.downscale(np.ascontiguousarray(hr[::-1]), np.ascontiguousarray(ref[::-1]))
    assert np.array_equal(first[0], kept[0]) and np.array_equal(first[1], kept[1])
    again = runtime.downscale(hr, ref)
    assert np.array_equal(again[0], kept[0]) and np.array_equal(again[1], kept[1])
    batch = np.stack([hr, hr[::-1]]).transpose(0, 3, 1, 2).copy()
    lr, smap = runtime.run_nchw(batch, np.stack([ref, ref[::-1]]).transpose(0, 3, 1, 2).copy())
    assert lr.shape == (2, 3, 96, 128) and smap is not None and smap.shape == (2, 1, 12, 16)
    assert np.array_equal(lr[0].transpose(1, 2, 0), kept[0])


def test_rejects_bad_inputs(x2: tuple[RefScale, OnnxDownscaler, Path]) -> None:
    runtime = x2[1]
    frame = np.zeros((64, 96, 3), np.uint8)
    with pytest.raises(ValueError, match="reference shape"):
        runtime.downscale(frame, np.zeros((64, 90, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        runtime.downscale(frame.astype(np.float32), None)
    with pytest.raises(ValueError, match="smaller"):
        runtime.downscale(np.zeros((3, 96, 3), np.uint8), None)


# ----------------------------------------------------------------------------- variants
def test_noref_model_exports_one_graph_and_ignores_a_reference(
    tmp_path: Path, webcam_crop: tuple[np.ndarray, np.ndarray]
) -> None:
    model = perturbed(RefScaleConfig(use_reference=False, blocks=(2,), **SMALL))
    res = export_onnx(model, tmp_path / "noref_model.onnx", model_id="x2-noref")
    assert res.noref_path is None and not noref_path(res.path).exists() and not smap_path(res.path).exists()
    runtime = OnnxDownscaler(res.path, providers=[CPU])
    hr, ref = webcam_crop
    got, want = runtime.downscale(hr, ref), TorchDownscaler(model).downscale(hr, ref)
    assert got[1] is None and want[1] is None
    assert_parity(got, want)


def test_float_input_and_fp16_graphs(tmp_path: Path, webcam_crop: tuple[np.ndarray, np.ndarray]) -> None:
    model = perturbed(RefScaleConfig(blocks=(2,), **SMALL))
    hr, ref = webcam_crop
    want = TorchDownscaler(model).downscale(hr, ref)
    f32 = OnnxDownscaler(export_onnx(model, tmp_path / "f.onnx", input_dtype="float32").path, providers=[CPU])
    assert f32.metadata["input_dtype"] == "float32"
    assert_parity(f32.downscale(hr, ref), want)
    half = OnnxDownscaler(export_onnx(model, tmp_path / "h.onnx", fp16=True).path, providers=[CPU])
    assert half.metadata["precision"] == "fp16"
    lr, smap = half.downscale(hr, ref)
    same, worst = agreement(lr, want[0])  # fp16 is not bit-parity; it must still be the same image
    assert same >= 0.9 and worst <= 3, (same, worst)
    assert smap is not None and want[1] is not None and agreement(smap, want[1])[0] >= 0.99


# ----------------------------------------------------------------------------- providers, no torch
def test_provider_fallback_never_crashes(
    x2: tuple[RefScale, OnnxDownscaler, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The default list (TensorRT -> CUDA -> CPU) and an unknown provider both end on a working session."""
    import onnxruntime as ort

    _, _, path = x2
    with caplog.at_level(logging.WARNING, logger="refscale_model.backends.onnx_runtime"):
        runtime = OnnxDownscaler(path, default_providers(tmp_path / "trt"))
        bogus = OnnxDownscaler(path, ["NoSuchExecutionProvider"])
    assert bogus.provider == CPU and "NoSuchExecutionProvider" in caplog.text
    assert runtime.provider in ort.get_available_providers() and runtime.provider == runtime.providers[0]
    if runtime.provider != "TensorrtExecutionProvider":
        assert "not the preferred TensorrtExecutionProvider" in caplog.text
    lr, smap = runtime.downscale(np.full((64, 96, 3), 128, np.uint8), np.full((64, 96, 3), 120, np.uint8))
    assert lr.shape == (32, 48, 3) and smap is not None


def test_runtime_module_needs_no_torch(x2: tuple[RefScale, OnnxDownscaler, Path]) -> None:
    """The onboard side imports numpy + onnxruntime only (the package __init__ is bypassed here)."""
    _, runtime, path = x2
    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    code = textwrap.dedent(
        f"""
        import sys, types, numpy as np
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        pkg = types.ModuleType("refscale_model"); pkg.__path__ = [{str(REPO_ROOT / "refscale_model")!r}]
        sys.modules["refscale_model"] = pkg
        from refscale_model.backends.onnx_runtime import CPU, OnnxDownscaler
        frame = np.frombuffer(bytes.fromhex({frame.tobytes().hex()!r}), np.uint8).reshape(64, 96, 3)
        lr, smap = OnnxDownscaler({str(path)!r}, [CPU]).downscale(frame, frame[::-1].copy())
        sys.stdout.write(lr.tobytes().hex() + " " + smap.tobytes().hex())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lr_hex, smap_hex = out.stdout.split()
    lr, smap = runtime.downscale(frame, np.ascontiguousarray(frame[::-1]))
    assert lr_hex == lr.tobytes().hex() and smap is not None and smap_hex == smap.tobytes().hex()
