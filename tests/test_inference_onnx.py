"""Picking on the CPU with ONNX Runtime: training's model.onnx, the same maps and picks as PyTorch,
the fallbacks and refusals of pick.backend, and ``cryounet export`` (cryounet.inference.onnx_picker,
cryounet.models.onnx_export, cryounet.commands.export)."""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from engine_helpers import AffineNet, SimData, error_line, loaded_model, spots_micrograph

from cryounet.config import ModelConfig, PickConfig
from cryounet.errors import CryoUNetError
from cryounet.inference.onnx_picker import (OnnxNetwork, OnnxPicker, OnnxUnusable, load_onnx_model,
                                            predict_probability_onnx)
from cryounet.inference.picker import Picker
from cryounet.inference.predict import predict_probability
from cryounet.io.coordinates import read_coordinates
from cryounet.io.model_folder import (CONFIG_NAME, ONNX_NAME, ONNX_NETWORK_KEY, SHA256_KEY, WEIGHTS_NAME, file_digest,
                                      read_model_info, record_digests, weights_digest)
from cryounet.io.mrc import write_mrc
from cryounet.models.fusion import fold_batch_norms
from cryounet.models.onnx_export import export_onnx
from cryounet.models.registry import build_model
from cryounet.models.weights import load_model, save_model


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    return target


def test_training_writes_a_graph_of_its_weights(tiny_model: Path) -> None:
    network = OnnxNetwork(tiny_model / ONNX_NAME, threads=1)
    assert network.weights_sha256 == weights_digest(tiny_model)
    assert network.multiple == load_model(tiny_model).network.multiple


@pytest.mark.parametrize("shape, tile_size, tta, symmetries", [
    ((97, 130), 1152, False, 4),   # whole, padded to the pooling multiple inside
    ((97, 130), 1152, True, 4),
    ((97, 130), 1152, True, 8),
    ((203, 150), 64, True, 4),     # tiled, rectangular
    ((203, 150), 64, False, 4),
])
def test_onnx_maps_equal_pytorchs(tiny_model: Path, shape: tuple[int, int], tile_size: int, tta: bool,
                                  symmetries: int) -> None:
    image = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    network = load_model(tiny_model).network
    fold_batch_norms(network)
    expected = predict_probability(network, image, tile_size, 16, 2, tta, "cpu", symmetries)
    pick = PickConfig(tile_size=tile_size, tile_overlap=16, batch_size=2, tta=tta, tta_symmetries=symmetries)
    got = predict_probability_onnx(OnnxNetwork(tiny_model / ONNX_NAME, threads=1), image, pick)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5
    assert expected.std() > 1e-3  # a map that varies, not a constant that would match anything


def _affine_folder(tmp_path: Path) -> tuple[Path, AffineNet]:
    """A model folder of a network with a well-separated map (bright spots over weak noise), with
    its model.onnx: picks that near-ties of a barely trained network cannot flip."""
    network = AffineNet(0.05, -5.0)
    model = loaded_model(network)
    folder = tmp_path / "affine"
    save_model(folder, network, model.info)
    assert export_onnx(network, folder) is None
    return folder, network


def test_onnx_picker_picks_as_pytorchs(tmp_path: Path) -> None:
    folder, network = _affine_folder(tmp_path)
    micrograph, xy = spots_micrograph()
    model = loaded_model(network)
    for tta in (False, True):
        pick = dataclasses.replace(model.info.config.pick, tta=tta, edge_exclusion=0.0)
        expected = Picker([model], pick).pick_image(micrograph, None)
        got = OnnxPicker([load_onnx_model(folder, 1)], pick).pick_image(micrograph, None)
        assert np.abs(got.probability - expected.probability).max() < 1e-6
        assert len(got.picks) == len(expected.picks) >= 4
        assert np.allclose(got.picks.xy, expected.picks.xy, atol=1e-4)
        assert np.allclose(got.picks.scores, expected.picks.scores, atol=1e-6)
        top = got.picks.xy[np.argsort(-got.picks.scores)[:4]]
        assert np.allclose(np.sort(top, axis=0), np.sort(xy, axis=0), atol=1.0)


def test_onnx_picker_refuses_reduced_precision(tiny_model: Path) -> None:
    with pytest.raises(CryoUNetError, match="float32"):
        OnnxPicker([load_onnx_model(tiny_model, 1)], PickConfig(precision="bfloat16"))


def test_a_graph_of_other_weights_or_none_is_not_used(tiny_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model, tmp_path)
    state = load_file(str(folder / WEIGHTS_NAME))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 0.01
    save_file(state, str(folder / WEIGHTS_NAME))
    record_digests(folder, [WEIGHTS_NAME])  # new weights, recorded as the folder's
    with pytest.raises(OnnxUnusable, match="other weights.*cryounet export --model .* --overwrite"):
        load_onnx_model(folder, 1)
    (folder / ONNX_NAME).write_bytes(b"not a graph")
    with pytest.raises(OnnxUnusable, match=ONNX_NAME):
        load_onnx_model(folder, 1)
    (folder / ONNX_NAME).unlink()
    with pytest.raises(OnnxUnusable, match=f"no {ONNX_NAME}"):
        load_onnx_model(folder, 1)


def test_a_graph_without_its_network_record_is_not_used(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    """A graph of the earlier export format (no network record) is not trusted, and the reason
    says how to rewrite it; the rewritten graph is used."""
    import onnx

    folder = _copy(tiny_model, tmp_path)
    graph = onnx.load(str(folder / ONNX_NAME))
    kept = [p for p in graph.metadata_props if p.key != ONNX_NETWORK_KEY]
    assert len(kept) < len(graph.metadata_props)
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(folder / ONNX_NAME))
    record_digests(folder, [ONNX_NAME])
    with pytest.raises(OnnxUnusable, match="does not record the network.*cryounet export --model "
                                           f"{re.escape(str(folder))} --overwrite rewrites it"):
        load_onnx_model(folder, 1)
    rc, _, err = run_cli("export", "--model", folder)
    assert rc != 0
    assert error_line(err, "export").endswith("(an earlier export format); pass --overwrite to replace it")
    rc, _, err = run_cli("export", "--model", folder, "--overwrite")
    assert rc == 0, err
    assert load_onnx_model(folder, 1).network.network_signature


def test_a_graph_of_another_network_is_not_used(run_cli, tiny_model: Path, sim_data: SimData,
                                                tmp_path: Path) -> None:
    """config.json describing another network than the weights and graph: the graph is not used,
    and PyTorch refuses the folder as it always did (the weights do not fit)."""
    folder = _copy(tiny_model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["config"]["model"]["base_channels"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(OnnxUnusable, match="another network") as caught:
        load_onnx_model(folder, 1)
    assert caught.value.anomaly
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "out", "--device", "cpu")
    assert rc != 0
    assert "model.safetensors" in error_line(err, "pick")


def test_a_graph_that_does_not_generalise_is_not_written(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The bottleneck's self-attention does not export (or would fix its sizes when traced): no
    model.onnx, the stale one removed, and PyTorch picks."""
    network = build_model(ModelConfig(base_channels=4, depth=2, bottleneck_attention=True)).eval()
    folder = tmp_path / "attention"
    from cryounet.config import CryoUNetConfig
    from cryounet.io.model_folder import ModelInfo
    save_model(folder, network, ModelInfo(CryoUNetConfig(), 32.0, 0.5))
    (folder / ONNX_NAME).write_bytes(b"an older graph")
    with caplog.at_level(logging.INFO, logger="cryounet"):
        problem = export_onnx(network, folder)
    assert problem is not None and ("exporter failed" in problem or "ONNX Runtime" in problem)
    assert not (folder / ONNX_NAME).exists()  # the stale one is gone too
    assert "picks with PyTorch" in caplog.text
    assert capsys.readouterr().out == ""  # not the exporter's dump of the traced graph
    plain = build_model(ModelConfig(base_channels=4, depth=2)).eval()
    save_model(folder, plain, ModelInfo(CryoUNetConfig(), 32.0, 0.5))
    assert export_onnx(plain, folder) is None
    assert OnnxNetwork(folder / ONNX_NAME, 1).weights_sha256 == weights_digest(folder)


def test_pick_command_uses_onnx_runtime_on_the_cpu(run_cli, tiny_model: Path, sim_data: SimData,
                                                   tmp_path: Path) -> None:
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.folder, "--output",
                         tmp_path / "onnx", "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    assert "using device cpu (1 threads, ONNX Runtime" in err
    assert len(list((tmp_path / "onnx").glob("mic_*.star"))) == len(sim_data.micrographs)
    # The picks are PyTorch's, on a model whose map separates particles from noise.
    folder, network = _affine_folder(tmp_path)
    micrograph, xy = spots_micrograph()
    write_mrc(tmp_path / "spots.mrc", micrograph)
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", tmp_path / "spots.mrc", "--output",
                         tmp_path / "affine_picks", "--device", "cpu")
    assert rc == 0, err
    assert "ONNX Runtime" in err
    model = loaded_model(network)
    expected = Picker([model], model.info.config.pick).pick_image(micrograph, model.info.threshold).picks
    got = read_coordinates(tmp_path / "affine_picks" / "spots.star")
    assert len(got.xy) == len(expected) == len(xy)
    assert np.allclose(got.xy, expected.xy, atol=0.01)


def test_pick_command_falls_back_to_pytorch_and_says_why(run_cli, tiny_model: Path, sim_data: SimData,
                                                         tmp_path: Path) -> None:
    folder = _copy(tiny_model, tmp_path)
    (folder / ONNX_NAME).unlink()
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "p1", "--device", "cpu")
    assert rc == 0, err
    assert f"picking with PyTorch: {folder} has no {ONNX_NAME}" in err
    rc, _, err = run_cli("pick", "--model", tiny_model, "--micrographs", sim_data.micrographs[0],
                         "--output", tmp_path / "p2", "--device", "cpu", "--precision", "bfloat16")
    assert rc == 0, err
    assert "picking with PyTorch: ONNX Runtime picks in float32" in err


@pytest.mark.parametrize("extra, message", [
    (["--device", "cuda"], "asks for a GPU"),
    (["--device", "cpu", "--precision", "bfloat16"], "float32"),
    (["--device", "cpu", "--model-without-graph"], f"has no {ONNX_NAME}"),
])
def test_pick_command_with_onnx_runtime_asked_for_refuses(run_cli, tiny_model: Path, sim_data: SimData,
                                                          tmp_path: Path, extra: list[str], message: str) -> None:
    model = tiny_model
    if "--model-without-graph" in extra:
        extra = [e for e in extra if e != "--model-without-graph"]
        model = _copy(tiny_model, tmp_path)
        (model / ONNX_NAME).unlink()
    rc, _, err = run_cli("pick", "--model", model, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "out", "--backend", "onnxruntime", *extra)
    assert rc != 0
    assert "--backend onnxruntime cannot pick here" in err and message in err
    assert not (tmp_path / "out").exists()


def test_export_command_writes_checks_and_refuses_to_overwrite(run_cli, tiny_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model, tmp_path)
    (folder / ONNX_NAME).unlink()
    rc, _, err = run_cli("export", "--model", folder)
    assert rc == 0, err
    assert load_onnx_model(folder, 1).path == folder
    written = (folder / ONNX_NAME).stat().st_mtime_ns
    rc, _, err = run_cli("export", "--model", folder)
    assert rc == 0 and "up to date" in err
    assert (folder / ONNX_NAME).stat().st_mtime_ns == written
    (folder / ONNX_NAME).write_bytes(b"made by someone else")
    rc, _, err = run_cli("export", "--model", folder)
    assert rc != 0 and "--overwrite" in err
    assert (folder / ONNX_NAME).read_bytes() == b"made by someone else"
    rc, _, err = run_cli("export", "--model", folder, "--overwrite")
    assert rc == 0, err
    assert load_onnx_model(folder, 1).network.weights_sha256 == weights_digest(folder)
    rc, _, err = run_cli("export", "--model", tmp_path / "absent")
    assert rc != 0 and "does not exist" in err



def _tamper_graph(folder: Path) -> None:
    """Change one weight value inside ``folder/model.onnx``, its metadata left as it was."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(folder / ONNX_NAME))
    tensor = next(t for t in graph.graph.initializer if numpy_helper.to_array(t).size > 1)
    values = numpy_helper.to_array(tensor).copy()
    values.flat[0] += 1.0
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    onnx.save(graph, str(folder / ONNX_NAME))


def test_a_graph_whose_bytes_do_not_match_the_record_is_not_used(run_cli, tiny_model: Path, sim_data: SimData,
                                                                 tmp_path: Path) -> None:
    """Weights changed inside model.onnx (its metadata still naming the folder's weights): PyTorch
    picks, with a warning naming the rewrite; --backend onnxruntime refuses."""
    folder = _copy(tiny_model, tmp_path)
    _tamper_graph(folder)
    assert OnnxNetwork(folder / ONNX_NAME, 1).weights_sha256 == weights_digest(folder)  # metadata says fine
    with pytest.raises(OnnxUnusable, match="does not match the SHA-256 recorded") as caught:
        load_onnx_model(folder, 1)
    assert caught.value.anomaly
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "p", "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    assert re.search(r"WARNING.*picking with PyTorch: .*model\.onnx does not match the SHA-256 recorded.*"
                     rf"cryounet export --model {re.escape(str(folder))} --overwrite", err)
    assert "ONNX Runtime" not in err.split("picking with PyTorch")[1]
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "q", "--device", "cpu", "--backend", "onnxruntime")
    assert rc != 0
    assert "--backend onnxruntime cannot pick here" in err and "does not match the SHA-256" in err
    rc, _, err = run_cli("export", "--model", folder)
    assert rc != 0 and "pass --overwrite" in error_line(err, "export")
    rc, _, err = run_cli("export", "--model", folder, "--overwrite")
    assert rc == 0, err
    assert load_onnx_model(folder, 1).path == folder


def test_a_folder_recording_no_graph_hash_picks_with_pytorch_until_exported(
        run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    """A folder of an earlier CryoUNet (config.json records no SHA-256): its graph is not trusted
    (PyTorch picks, the reason logged), its weights are used with a warning, and export writes the
    graph again and records both hashes, without --overwrite."""
    folder = _copy(tiny_model, tmp_path)
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config[SHA256_KEY]
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(OnnxUnusable, match="records no SHA-256 of model.onnx.*cryounet export --model") as caught:
        load_onnx_model(folder, 1)
    assert not caught.value.anomaly
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "p", "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    assert "picking with PyTorch" in err and "records no SHA-256 of model.onnx" in err
    assert "its weights cannot be checked" in err
    rc, _, err = run_cli("export", "--model", folder)
    assert rc == 0, err
    recorded = read_model_info(folder).sha256
    assert recorded == {WEIGHTS_NAME: weights_digest(folder), ONNX_NAME: file_digest(folder / ONNX_NAME)}
    assert load_onnx_model(folder, 1).path == folder


def test_damaged_weights_are_refused_by_both_backends(run_cli, tiny_model: Path, sim_data: SimData,
                                                      tmp_path: Path) -> None:
    """Weights whose bytes differ from the record: an error naming the file, whatever the backend
    (config.json's other values are not a way around it)."""
    folder = _copy(tiny_model, tmp_path)
    data = bytearray((folder / WEIGHTS_NAME).read_bytes())
    data[-3] ^= 0x10
    (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    for backend in ("torch", "onnxruntime", "auto"):
        rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                             tmp_path / backend, "--device", "cpu", "--backend", backend)
        assert rc != 0
        assert "model.safetensors: does not match the SHA-256" in error_line(err, "pick")


def test_export_records_the_graph_hash(tiny_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model, tmp_path)
    assert read_model_info(folder).sha256[ONNX_NAME] == file_digest(folder / ONNX_NAME)  # training's
    network = load_model(folder).network
    (folder / ONNX_NAME).unlink()
    record_digests(folder, [ONNX_NAME])
    assert ONNX_NAME not in read_model_info(folder).sha256
    assert export_onnx(network, folder) is None
    assert read_model_info(folder).sha256[ONNX_NAME] == file_digest(folder / ONNX_NAME)


def test_a_fold_model_graph_is_checked_too(run_cli, tiny_model: Path, sim_data: SimData, tmp_path: Path) -> None:
    """A calibration fold model picks with the main one: its graph is held to its own record."""
    folder = _copy(tiny_model, tmp_path)
    shutil.copytree(tiny_model, folder / "fold_1")
    _tamper_graph(folder / "fold_1")
    rc, _, err = run_cli("pick", "--model", folder, "--micrographs", sim_data.micrographs[0], "--output",
                         tmp_path / "p", "--device", "cpu", "--threads", "1")
    assert rc == 0, err
    assert "ensemble of 2 networks" in err
    assert re.search(rf"WARNING.*picking with PyTorch: {re.escape(str(folder / 'fold_1' / ONNX_NAME))} does not "
                     "match the SHA-256", err)
    rc, _, err = run_cli("export", "--model", folder, "--overwrite")
    assert rc == 0, err
    assert load_onnx_model(folder / "fold_1", 1).path == folder / "fold_1"
