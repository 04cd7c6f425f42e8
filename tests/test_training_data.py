"""Micrographs with their coordinates, validation split, patches (cryounet.training.data, io.micrographs)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine_helpers import SimData

from cryounet.config import CryoUNetConfig, PreprocessConfig
from cryounet.io.micrographs import expand_micrographs
from cryounet.training.data import LabelledMicrograph, PatchSampler, load_labelled, split_validation
from cryounet.errors import CryoUNetError
from cryounet.io.coordinates import Picks, read_coordinates, write_text_picks
from cryounet.io.mrc import write_mrc
from cryounet.preprocess import Scale


def _touch_mrcs(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(b"")
        paths.append(path)
    return paths


# ------------------------------------------------------------------------ expand_micrographs
def test_expand_folder_file_glob_and_list(tmp_path: Path) -> None:
    a, b = _touch_mrcs(tmp_path / "f", "a.mrc", "b.MRC")
    (tmp_path / "f" / "notes.txt").write_text("x")
    assert expand_micrographs([tmp_path / "f"]) == [a, b]
    c, = _touch_mrcs(tmp_path / "g", "c.mrc")
    assert expand_micrographs([str(c)]) == [c]
    assert expand_micrographs([str(tmp_path / "f" / "*.mrc")]) == [a]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my selection\n{a}\n\n{c}\n")
    assert expand_micrographs([f"@{listing}"]) == [a, c]


def test_expand_errors(tmp_path: Path) -> None:
    with pytest.raises(CryoUNetError, match="nothing.mrc: no such micrograph"):
        expand_micrographs([str(tmp_path / "nothing.mrc")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CryoUNetError, match="holds no micrographs"):
        expand_micrographs([tmp_path / "empty"])
    with pytest.raises(CryoUNetError, match="list file does not exist"):
        expand_micrographs([f"@{tmp_path / 'missing.txt'}"])
    with pytest.raises(CryoUNetError, match="no micrographs given"):
        expand_micrographs([])
    a, = _touch_mrcs(tmp_path / "x", "mic.mrc")
    b, = _touch_mrcs(tmp_path / "y", "mic.mrc")
    with pytest.raises(CryoUNetError, match="share the name stem 'mic'"):
        expand_micrographs([a, b])


# ------------------------------------------------------------------------------ load_labelled
def test_load_labelled_maps_picks_to_working_pixels(sim_data: SimData) -> None:
    cfg = PreprocessConfig(working_diameter=16.0)
    items, unlabelled = load_labelled(sim_data.micrographs, sim_data.folder, sim_data.diameter, cfg)
    assert unlabelled == []
    assert [it.name for it in items] == ["mic_000", "mic_001", "mic_002", "mic_003"]
    item = items[0]
    assert item.image.shape == (128, 128) and item.image.dtype == np.float32  # 192 / 1.5
    assert item.diameter == pytest.approx(16.0)
    picks = read_coordinates(sim_data.star(0))
    np.testing.assert_allclose(item.xy, (picks.xy + 0.5) / 1.5 - 0.5)
    np.testing.assert_allclose(item.scale.to_input(item.xy), picks.xy)


def test_load_labelled_unlabelled_and_outside_picks(sim_data: SimData, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    coords = tmp_path / "coords"
    coords.mkdir()
    write_text_picks(coords / "mic_001.txt", Picks([[10, 10], [191.4, 5], [-0.6, 5], [50, 500]]))
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        items, unlabelled = load_labelled(sim_data.micrographs, coords, 24.0, PreprocessConfig())
    assert [it.name for it in items] == ["mic_001"]
    assert [p.name for p in unlabelled] == ["mic_000.mrc", "mic_002.mrc", "mic_003.mrc"]
    assert len(items[0].xy) == 2  # (10, 10) and (191.4, 5) are inside [-0.5, 191.5)
    assert any("2 of 4 picks lie outside" in r.getMessage() for r in caplog.records)


def test_load_labelled_matches_relion_and_cryolo_names(sim_data: SimData, tmp_path: Path) -> None:
    """RELION's <mic>_autopick.star / <mic>_manualpick.star and crYOLO's <mic>.cbox need no renaming."""
    coords = tmp_path / "coords"
    coords.mkdir()
    shutil.copy(sim_data.star(0), coords / "mic_000_autopick.star")
    shutil.copy(sim_data.star(1), coords / "mic_001_manualpick.star")
    write_text_picks(coords / "mic_002_picks.txt", Picks([[40, 40]]))
    (coords / "mic_003.cbox").write_text("30 30 20 20 0.9\n")
    items, unlabelled = load_labelled(sim_data.micrographs, coords, 24.0, PreprocessConfig())
    assert unlabelled == [] and [len(it.xy) for it in items[:2]] == \
        [len(read_coordinates(sim_data.star(i))) for i in range(2)]
    np.testing.assert_allclose(items[3].scale.to_input(items[3].xy), [[40, 40]])
    shutil.copy(sim_data.star(0), coords / "mic_000.star")
    with pytest.raises(CryoUNetError, match="'mic_000': mic_000.star, mic_000_autopick.star"):
        load_labelled(sim_data.micrographs, coords, 24.0, PreprocessConfig())


def test_load_labelled_errors(sim_data: SimData, tmp_path: Path) -> None:
    with pytest.raises(CryoUNetError, match="coordinate folder does not exist"):
        load_labelled(sim_data.micrographs, tmp_path / "nope", 24.0, PreprocessConfig())
    (tmp_path / "other").mkdir()
    write_text_picks(tmp_path / "other" / "unrelated.txt", Picks([[1, 1]]))
    with pytest.raises(CryoUNetError, match="no coordinate file matches any of the 4 micrographs"):
        load_labelled(sim_data.micrographs, tmp_path / "other", 24.0, PreprocessConfig())
    with pytest.raises(CryoUNetError, match="not smaller than the micrograph"):
        load_labelled(sim_data.micrographs, sim_data.folder, 500.0, PreprocessConfig())


# --------------------------------------------------------------------------- split_validation
def _item(name: str, ny: int = 100, nx: int = 80, xy=None,
          diameter: float = 10.0) -> LabelledMicrograph:
    xy = np.zeros((0, 2)) if xy is None else np.asarray(xy, dtype=float)
    return LabelledMicrograph(name, np.zeros((ny, nx), np.float32), xy,
                              Scale((ny, nx), (ny, nx)), diameter)


def test_split_several_micrographs() -> None:
    items = [_item(f"m{i}") for i in range(10)]
    train, valid = split_validation(items, 0.2, np.random.default_rng(0))
    assert len(valid) == 2 and len(train) == 8
    assert {i.name for i in train} | {i.name for i in valid} == {f"m{i}" for i in range(10)}
    again = split_validation(items, 0.2, np.random.default_rng(0))[1]
    assert [i.name for i in again] == [i.name for i in valid]  # reproducible
    train, valid = split_validation(items[:2], 0.01, np.random.default_rng(0))
    assert len(train) == len(valid) == 1  # at least one each way
    train, valid = split_validation(items[:3], 0.99, np.random.default_rng(0))
    assert len(train) == 1 and len(valid) == 2


def test_split_single_micrograph_holds_out_bottom_strip(caplog: pytest.LogCaptureFixture) -> None:
    item = _item("only", ny=100, xy=[[5, 10], [5, 70], [5, 79.4], [5, 79.6], [5, 95]], diameter=10)
    with caplog.at_level(logging.WARNING, logger="cryounet"):
        train, valid = split_validation([item], 0.2, np.random.default_rng(0))
    assert train[0].image.shape == (80, 80) and valid[0].image.shape == (20, 80)
    np.testing.assert_allclose(train[0].xy, [[5, 10], [5, 70], [5, 79.4]])
    np.testing.assert_allclose(valid[0].xy, [[5, 79.6 - 80], [5, 15]])
    assert any("held out" in r.getMessage() for r in caplog.records)


def test_split_errors() -> None:
    with pytest.raises(CryoUNetError, match="valid_fraction"):
        split_validation([_item("a"), _item("b")], 0.0, np.random.default_rng(0))
    with pytest.raises(CryoUNetError, match="too small to hold out"):
        split_validation([_item("a", ny=50, diameter=15)], 0.2, np.random.default_rng(0))


# ------------------------------------------------------------------------------- PatchSampler
def test_patch_sampler_positive_and_uniform_patches() -> None:
    image = np.random.default_rng(0).standard_normal((60, 70)).astype(np.float32)
    item = LabelledMicrograph("m", image, np.array([[2.0, 3.0], [40.0, 30.0]]),
                              Scale((60, 70), (60, 70)), 10.0)
    positive = PatchSampler([item], CryoUNetConfig().updated({"train": {"positive_fraction": 1.0}}),
                            32, np.random.default_rng(1))
    for _ in range(20):
        img, target, weight = positive.sample()
        assert img.shape == target.shape == weight.shape == (32, 32)
        assert img.dtype == target.dtype == weight.dtype == np.float32
        assert target.max() == 1.0  # centred near a pick: its core is in the patch
    uniform = PatchSampler([item], CryoUNetConfig().updated({"train": {"positive_fraction": 0.0}}),
                           32, np.random.default_rng(2))
    for _ in range(20):
        img, _, _ = uniform.sample()
        assert (img != 0).all()  # drawn inside the micrograph: no padding


def test_patch_sampler_padding_has_weight_zero() -> None:
    item = LabelledMicrograph("m", np.ones((20, 20), np.float32), np.array([[1.0, 1.0]]),
                              Scale((20, 20), (20, 20)), 4.0)
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": 1.0}})
    sampler = PatchSampler([item], cfg, 48, np.random.default_rng(2))
    for _ in range(5):
        img, target, weight = sampler.sample()
        pad = img == 0  # the micrograph is all ones
        assert pad.any() and (weight[pad] == 0).all() and (target[pad] == 0).all()
        assert target.max() == 1.0


def test_patch_sampler_with_picks_is_reproducible() -> None:
    image = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    items = [LabelledMicrograph("m", image, np.array([[20.0, 30.0]]), Scale((64, 64), (64, 64)), 8.0)]
    a = PatchSampler(items, CryoUNetConfig(), 16, np.random.default_rng(5))
    b = PatchSampler(items, CryoUNetConfig(), 16, np.random.default_rng(5))
    for _ in range(10):
        for x, y in zip(a.sample(), b.sample()):
            np.testing.assert_array_equal(x, y)


def test_patch_sampler_without_picks_draws_uniform_patches() -> None:
    image = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    items = [LabelledMicrograph("m", image, np.zeros((0, 2)), Scale((64, 64), (64, 64)), 8.0)]
    sampler = PatchSampler(items, CryoUNetConfig(), 16, np.random.default_rng(5))
    for _ in range(10):
        img, target, weight = sampler.sample()
        assert img.shape == (16, 16) and target.max() == 0.0 and (weight == 1.0).all()


def test_rows_keeps_background_and_names(tmp_path: Path) -> None:
    bg = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    item = _item("m", xy=[[1, 50]])
    item.background = bg
    strip = item.rows(40, 60)
    assert strip.name == "m[rows 40:60]"
    np.testing.assert_array_equal(strip.background, bg[40:60])
    np.testing.assert_allclose(strip.xy, [[1, 10]])


def test_load_real_micrograph_copy(sim_data: SimData, tmp_path: Path) -> None:
    # A micrograph copied with its STAR file under a new name is found by stem.
    shutil.copy(sim_data.micrographs[0], tmp_path / "copy.mrc")
    shutil.copy(sim_data.star(0), tmp_path / "copy.star")
    write_mrc(tmp_path / "other.mrc", np.random.default_rng(0).random((64, 64)))
    items, unlabelled = load_labelled(expand_micrographs([tmp_path]), tmp_path, 24.0,
                                      PreprocessConfig())
    assert [i.name for i in items] == ["copy"] and [p.name for p in unlabelled] == ["other.mrc"]
    assert len(items[0].xy) == len(read_coordinates(sim_data.star(0)))


# --------------------------------------------------------------- hard-negative patch sampling
MARKER = 100.0


def _marked_item(size: int = 256, picks=((40.0, 40.0),), marker=(200, 180)) -> LabelledMicrograph:
    """A zero micrograph with one bright pixel (the marker) at ``marker`` (x, y), far from picks."""
    image = np.zeros((size, size), np.float32)
    image[marker[1], marker[0]] = MARKER
    return LabelledMicrograph("m", image, np.asarray(picks, dtype=float).reshape(-1, 2),
                              Scale((size, size), (size, size)), 4.0)


def _fractions(sampler: PatchSampler, n: int) -> tuple[float, float]:
    """Fractions of patches that hold the marker, and that hold a pick's positive core."""
    marked = centred = 0
    for _ in range(n):
        img, target, _ = sampler.sample()
        marked += bool((img == MARKER).any())
        centred += bool(target.max() == 1.0)
    return marked / n, centred / n


@pytest.mark.parametrize("hard_fraction", [0.3, 0.5])
def test_patch_sampler_centres_the_hard_negative_fraction(hard_fraction: float) -> None:
    item = _marked_item()
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": 0.4,
                                              "hard_negative_fraction": hard_fraction}})
    sampler = PatchSampler([item], cfg, 16, np.random.default_rng(0),
                           hard_negatives=[np.array([[200.0, 180.0]])])
    marked, centred = _fractions(sampler, 3000)
    # A uniform 16 px patch of the 256 px micrograph holds the marker with probability
    # (16 / 241)^2 < 0.5 %; a patch centred (with jitter < 4 px) on the hard negative always does.
    assert marked == pytest.approx(hard_fraction, abs=0.035)
    assert centred == pytest.approx(0.4, abs=0.035)


def test_patch_sampler_hard_negatives_off() -> None:
    item = _marked_item()
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": 0.4,
                                              "hard_negative_fraction": 0.5}})
    for hard in (None, [], [np.zeros((0, 2))]):  # nothing mined: those patches are uniform
        sampler = PatchSampler([item], cfg, 16, np.random.default_rng(0), hard_negatives=hard)
        assert sampler.hard_fraction == 0.0
        marked, centred = _fractions(sampler, 1000)
        assert marked < 0.02 and centred == pytest.approx(0.4, abs=0.05)
    # A fraction of 0 ignores given hard negatives.
    off = CryoUNetConfig().updated({"train": {"positive_fraction": 0.4}})
    sampler = PatchSampler([item], off, 16, np.random.default_rng(0),
                           hard_negatives=[np.array([[200.0, 180.0]])])
    assert _fractions(sampler, 1000)[0] < 0.02


def test_patch_sampler_hard_negatives_without_picks() -> None:
    item = _marked_item(picks=np.zeros((0, 2)))
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": 0.5,
                                              "hard_negative_fraction": 0.3}})
    sampler = PatchSampler([item], cfg, 16, np.random.default_rng(1),
                           hard_negatives=[np.array([[200.0, 180.0]])])
    marked, centred = _fractions(sampler, 2000)
    assert centred == 0.0 and marked == pytest.approx(0.3, abs=0.035)


def test_patch_sampler_hard_negative_on_the_right_micrograph() -> None:
    # Hard negatives are per micrograph: the marked one is the second; the first has none.
    plain = _marked_item(marker=(0, 0))
    plain.image[0, 0] = 0.0
    marked_item = _marked_item()
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": 0.2,
                                              "hard_negative_fraction": 0.5}})
    sampler = PatchSampler([plain, marked_item], cfg, 16, np.random.default_rng(2),
                           hard_negatives=[np.zeros((0, 2)), np.array([[200.0, 180.0]])])
    marked, _ = _fractions(sampler, 2000)
    assert marked == pytest.approx(0.5, abs=0.035)
    # The target of a hard-negative patch is empty (no pick there) and its weights are set.
    sampler = PatchSampler([marked_item], cfg.updated({"train": {"positive_fraction": 0.0,
                                                                 "hard_negative_fraction": 1.0}}),
                           16, np.random.default_rng(3), hard_negatives=[np.array([[200.0, 180.0]])])
    for _ in range(20):
        img, target, weight = sampler.sample()
        assert (img == MARKER).any() and target.max() == 0.0 and (weight > 0).all()


# ------------------------------------------------------------------------- dataset balance
def _group_items() -> list[LabelledMicrograph]:
    """Group 0: one large micrograph with 40 picks; group 1: two small ones with 2 picks each;
    training-only: one with 10 picks."""
    def item(name: str, size: int, picks: int, group: int) -> LabelledMicrograph:
        xy = np.column_stack([np.linspace(10, size - 10, picks)] * 2) if picks else np.zeros((0, 2))
        image = np.full((size, size), float(group + 2), np.float32)  # the group, readable from a patch
        return LabelledMicrograph(name, image, xy, Scale((size, size), (size, size)), 8.0, group=group)
    return [item("big", 256, 40, 0), item("s1", 64, 2, 1), item("s2", 64, 2, 1), item("sim", 64, 10, -1)]


@pytest.mark.parametrize("positive_fraction", [1.0, 0.0])
def test_dataset_balance_equal_gives_each_dataset_a_share(positive_fraction: float) -> None:
    items = _group_items()
    cfg = CryoUNetConfig().updated({"train": {"positive_fraction": positive_fraction, "dataset_balance": "equal"}})
    sampler = PatchSampler(items, cfg, 16, np.random.default_rng(0))
    drawn = [int(round(sampler.sample()[0].max())) - 2 for _ in range(1500)]
    shares = {g: drawn.count(g) / len(drawn) for g in (0, 1, -1)}
    assert all(abs(share - 1 / 3) < 0.05 for share in shares.values()), shares  # one share per dataset
    pooled = PatchSampler(items, CryoUNetConfig().updated({"train": {"positive_fraction": positive_fraction}}), 16,
                          np.random.default_rng(0))
    drawn = [int(round(pooled.sample()[0].max())) - 2 for _ in range(600)]
    assert drawn.count(0) / len(drawn) > 0.6  # without balance the big micrograph dominates


def test_balanced_probabilities_skip_groups_without_weight() -> None:
    from cryounet.training.data import balanced

    items = _group_items()
    p = balanced(np.array([40.0, 2.0, 2.0, 0.0]), items)  # the training-only group has no weight
    np.testing.assert_allclose(p, [0.5, 0.25, 0.25, 0.0])


def test_dataset_balance_choices() -> None:
    with pytest.raises(CryoUNetError, match="train.dataset_balance = 'sqrt' is not one of none, equal"):
        CryoUNetConfig.from_dict({"train": {"dataset_balance": "sqrt"}})
