"""Picking at scale: ``pick --shard K/N`` splits one micrograph list into disjoint shards (one queue
job each), ``merge`` joins their pick folders into one, identical to picking the list at once."""
from __future__ import annotations

from pathlib import Path

from engine_helpers import error_line

from cryounet.io.coordinates import read_star_index
from cryounet.io.outputs import MARKER_NAME
from cryounet.io.picks_folder import select_shard


def _stars(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.star") if p.name != "coordinates.star"}


def test_select_shard_is_a_disjoint_round_robin_cover() -> None:
    items = [Path(f"m{i}.mrc") for i in range(11)]
    shards = [select_shard(items, k, 3) for k in (1, 2, 3)]
    assert [len(s) for s in shards] == [4, 4, 3]
    assert sorted(sum(shards, []), key=items.index) == items
    assert select_shard(items, 1, 1) == items
    assert select_shard(items[:2], 3, 3) == []  # more shards than micrographs: an empty shard


def test_shards_merge_into_the_picks_of_the_whole_list(tmp_path, run_cli, sim_data, tiny_model) -> None:
    base = ["pick", "--model", tiny_model, "--micrographs", sim_data.folder, "--device", "cpu", "--no-tta"]
    assert run_cli(*base, "--output", tmp_path / "all")[0] == 0
    for k in (1, 2, 3):
        rc, _, err = run_cli(*base, "--shard", f"{k}/3", "--output", tmp_path / f"shard{k}")
        assert rc == 0, err
    parts = [_stars(tmp_path / f"shard{k}") for k in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(_stars(tmp_path / "all")) == len(sim_data.micrographs)
    rc, _, err = run_cli("merge", "--picks", *[tmp_path / f"shard{k}" for k in (1, 2, 3)],
                         "--output", tmp_path / "merged")
    assert rc == 0, err
    assert _stars(tmp_path / "merged") == _stars(tmp_path / "all")  # byte for byte
    assert read_star_index(tmp_path / "merged" / "coordinates.star") == \
        read_star_index(tmp_path / "all" / "coordinates.star")
    assert (tmp_path / "merged" / MARKER_NAME).is_file()


def test_merge_refuses_overlapping_unfinished_or_self_inputs(tmp_path, run_cli, sim_data, tiny_model) -> None:
    base = ["pick", "--model", tiny_model, "--micrographs", sim_data.folder, "--device", "cpu", "--no-tta"]
    assert run_cli(*base, "--shard", "1/2", "--output", tmp_path / "a")[0] == 0
    assert run_cli(*base, "--shard", "1/2", "--output", tmp_path / "b")[0] == 0
    rc, _, err = run_cli("merge", "--picks", tmp_path / "a", tmp_path / "b", "--output", tmp_path / "m")
    assert rc == 2 and "the shards overlap" in error_line(err, "merge")
    assert not (tmp_path / "m").exists()  # checked before anything is written
    (tmp_path / "a" / MARKER_NAME).write_text('{"command": "pick", "complete": false}')
    rc, _, err = run_cli("merge", "--picks", tmp_path / "a", "--output", tmp_path / "m2")
    assert rc == 2 and "did not finish" in error_line(err, "merge") and not (tmp_path / "m2").exists()
    rc, _, err = run_cli("merge", "--picks", tmp_path / "b", "--output", tmp_path / "b", "--overwrite")
    assert rc == 2 and "is one of the folders to merge" in error_line(err, "merge")
    assert _stars(tmp_path / "b")  # the input is intact
    rc, _, err = run_cli(*base, "--shard", "3/2", "--output", tmp_path / "c")
    assert rc == 2 and "1 <= K <= N" in err
