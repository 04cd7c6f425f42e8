"""Picking at scale: ``pick --shard K/N`` splits one micrograph list into disjoint shards (one queue
job each), ``merge`` joins their pick folders into one, identical to picking the list at once."""
from __future__ import annotations

from pathlib import Path

from engine_helpers import error_line

from cryounet.io.coordinates import read_star_index
from cryounet.io.model_folder import read_model_info
from cryounet.io.outputs import MARKER_NAME
from cryounet.io.picks_folder import RECORD_NAME, read_pick_record, select_shard


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
    shard = read_pick_record(tmp_path / "shard2")
    assert (shard.command, shard.shard, shard.listed) == ("pick", (2, 3), len(sim_data.micrographs))
    assert shard.micrographs == len(parts[1]) and len(shard.models) == 1
    assert shard.models[0]["weights_sha256"] == read_model_info(tiny_model).sha256["model.safetensors"]
    merged, whole = read_pick_record(tmp_path / "merged"), read_pick_record(tmp_path / "all")
    assert (merged.command, merged.shard, merged.micrographs) == ("merge", None, len(sim_data.micrographs))
    assert (merged.threshold, merged.models) == (whole.threshold, whole.models)


def test_merge_refuses_overlapping_unfinished_or_self_inputs(tmp_path, run_cli, sim_data, tiny_model) -> None:
    base = ["pick", "--model", tiny_model, "--micrographs", sim_data.folder, "--device", "cpu", "--no-tta"]
    assert run_cli(*base, "--shard", "1/2", "--output", tmp_path / "a")[0] == 0
    assert run_cli(*base, "--shard", "1/2", "--output", tmp_path / "b")[0] == 0
    rc, _, err = run_cli("merge", "--picks", tmp_path / "a", tmp_path / "b", "--output", tmp_path / "m")
    assert rc == 2 and error_line(err, "merge") == f"{tmp_path / 'a'} and {tmp_path / 'b'} both hold shard 1/2"
    assert not (tmp_path / "m").exists()  # checked before anything is written
    assert run_cli(*base, "--output", tmp_path / "w1")[0] == 0
    assert run_cli(*base, "--output", tmp_path / "w2")[0] == 0
    rc, _, err = run_cli("merge", "--picks", tmp_path / "w1", tmp_path / "w2", "--output", tmp_path / "m")
    assert rc == 2 and "the shards overlap" in error_line(err, "merge")  # two whole lists: by micrograph
    (tmp_path / "a" / MARKER_NAME).write_text('{"command": "pick", "complete": false}')
    rc, _, err = run_cli("merge", "--picks", tmp_path / "a", "--output", tmp_path / "m2")
    assert rc == 2 and "did not finish" in error_line(err, "merge") and not (tmp_path / "m2").exists()
    rc, _, err = run_cli("merge", "--picks", tmp_path / "b", "--output", tmp_path / "b", "--overwrite")
    assert rc == 2 and "is one of the folders to merge" in error_line(err, "merge")
    assert _stars(tmp_path / "b")  # the input is intact
    rc, _, err = run_cli(*base, "--shard", "3/2", "--output", tmp_path / "c")
    assert rc == 2 and "1 <= K <= N" in err


def test_merge_refuses_a_missing_foreign_or_unrecorded_shard(tmp_path, run_cli, sim_data, tiny_model) -> None:
    """merge --picks s1 s2 s4 of 4 names shard 3/4; shards of another model, threshold or
    post-processing, and folders without pick.json, are refused before anything is written."""
    base = ["--micrographs", sim_data.folder, "--device", "cpu", "--no-tta", "--threads", "1",
            "--diameter", str(sim_data.diameter)]

    def pick(name: str, shard: str, model: object = tiny_model, threshold: str = "0.5") -> Path:
        rc, _, err = run_cli("pick", "--model", model, *base, "--shard", shard, "--threshold", threshold,
                             "--output", tmp_path / name)
        assert rc == 0, err
        return tmp_path / name

    s1, s2, s4 = pick("s1", "1/4"), pick("s2", "2/4"), pick("s4", "4/4")

    def refused(*folders: Path) -> str:
        rc, _, err = run_cli("merge", "--picks", *folders, "--output", tmp_path / "m")
        assert rc == 2 and not (tmp_path / "m").exists()
        return error_line(err, "merge")

    assert refused(s1, s2, s4).startswith("shard 3/4 missing: merging 3 of 4")
    assert "--shard 3/4" in refused(s1, s2, s4)
    threshold = pick("t3", "3/4", threshold="0.6")
    assert f"{s1} and {threshold} were not picked alike: threshold 0.5 and 0.6" in refused(s1, s2, threshold, s4)
    foreign = pick("f3", "3/4", model="general")
    message = refused(s1, s2, foreign, s4)
    assert "were not picked alike: models" in message and "weights/general" in message
    s3 = pick("s3", "3/4")
    (s3 / RECORD_NAME).unlink()
    assert f"{s3}: no {RECORD_NAME} (picked by an earlier CryoUNet" in refused(s1, s2, s3, s4)
    assert "given twice" in refused(s1, s1)
    s3 = pick("s3b", "3/4")
    rc, _, err = run_cli("merge", "--picks", s4, s3, s2, s1, "--output", tmp_path / "good")
    assert rc == 0, err
    assert read_pick_record(tmp_path / "good").micrographs == len(sim_data.micrographs)
    # postprocess keeps the record, cut at the higher threshold; alike post-processed shards merge
    for k, folder in enumerate((s1, s2, s3, s4), 1):
        rc, _, err = run_cli("postprocess", "--picks", folder, "--output", tmp_path / f"p{k}",
                             "--diameter", str(sim_data.diameter), "--threshold", "0.7")
        assert rc == 0, err
    record = read_pick_record(tmp_path / "p1")
    assert (record.command, record.shard, record.threshold) == ("postprocess", (1, 4), 0.7)
    assert record.models == read_pick_record(s1).models and record.postprocess["threshold"] == 0.7
    assert "not picked alike: threshold 0.7 and 0.5" in refused(tmp_path / "p1", s2, s3, s4)
    rc, _, err = run_cli("postprocess", "--picks", s2, "--output", tmp_path / "n2", "--diameter",
                         str(sim_data.diameter), "--threshold", "0.7", "--nms-distance", "30")
    assert rc == 0, err
    assert "not picked alike: post-processing" in refused(tmp_path / "p1", tmp_path / "n2", tmp_path / "p3",
                                                          tmp_path / "p4")
    rc, _, err = run_cli("merge", "--picks", *[tmp_path / f"p{k}" for k in (1, 2, 3, 4)], "--output",
                         tmp_path / "pp")
    assert rc == 0, err
