"""Coordinate files (cryounet.io.coordinates): STAR/BOX/CSV/TXT readers and the STAR writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile

from cryounet.errors import CryoUNetError, InputFileError
from cryounet.io.coordinates import (INDEX_BLOCK, UNCERTAINTY_LABEL, Picks, coordinate_stem,
                                     find_coordinate_file, list_coordinate_files, read_coordinates,
                                     read_star_index, write_star_index, write_star_picks, write_text_picks)
from cryounet.io.star import split_star_line, star_value

RELION31_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
_rlnVoltage #4
opticsGroup1 1 1.060000 300.000000

# version 30001

data_particles

loop_
_rlnMicrographName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnAutopickFigureOfMerit #4
_rlnOpticsGroup #5
MotionCorr/job002/mic1.mrc 100.000000 200.000000 0.500000 1
MotionCorr/job002/mic1.mrc 300.500000 400.250000 0.750000 1
MotionCorr/job002/mic1.mrc 12.000000 7.000000 0.125000 1
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _refused(path: Path, match: str) -> None:
    with pytest.raises(InputFileError, match=match) as info:
        read_coordinates(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------ STAR
def test_relion_star_with_headers_and_scores(tmp_path: Path) -> None:
    path = _write(tmp_path / "mic.star", """
# RELION; version 3.0
data_

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnClassNumber #3
_rlnAnglePsi #4
_rlnAutopickFigureOfMerit #5
  1024.5   16.0  0  -999.0  0.9
    17.25 900.0  0  -999.0  0.2
""")
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[1024.5, 16.0], [17.25, 900.0]])
    np.testing.assert_allclose(picks.scores, [0.9, 0.2])
    assert picks.uncertainty is None


def test_star_without_scores(tmp_path: Path) -> None:
    path = _write(tmp_path / "mic.star",
                  "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n3 4\n")
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[1, 2], [3, 4]])
    assert picks.scores is None


def test_relion31_multi_block_star_with_optics(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic1.star", RELION31_STAR))
    np.testing.assert_allclose(picks.xy, [[100.0, 200.0], [300.5, 400.25], [12.0, 7.0]])
    np.testing.assert_allclose(picks.scores, [0.5, 0.75, 0.125])


def test_header_only_star_is_no_picks(tmp_path: Path) -> None:
    """The coordinate loop without rows (what CryoUNet writes for a micrograph without picks)."""
    text = "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
    picks = read_coordinates(_write(tmp_path / "mic.star", text))
    assert len(picks) == 0 and picks.xy.shape == (0, 2)


@pytest.mark.parametrize("text", ["", "\n\n", "data_\n\n", "data_\n_rlnCoordinateX_note 1\n"],
                         ids=["empty", "blank-lines", "data-block-only", "no-loop"])
def test_star_without_a_coordinate_loop_is_refused(tmp_path: Path, text: str) -> None:
    """Not silently zero particles (a labelled micrograph would be trained as background)."""
    with pytest.raises(InputFileError, match="empty file|no _rlnCoordinateX|not a readable STAR"):
        read_coordinates(_write(tmp_path / "mic.star", text))


def test_one_particle_in_a_simple_block(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "one.star", "data_\n_rlnCoordinateX 12.5\n_rlnCoordinateY 7\n"))
    assert picks.xy.tolist() == [[12.5, 7.0]]


@pytest.mark.parametrize("text", ["1;2\n3;4\n", "x;y\n1;2\n3;4\n", "1\t2\n3\t4\n"],
                         ids=["semicolon", "header", "tab"])
def test_text_separators(tmp_path: Path, text: str) -> None:
    assert read_coordinates(_write(tmp_path / "m.csv", text)).xy.tolist() == [[1, 2], [3, 4]]


def test_only_one_header_line(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="line 2 is not numeric"):
        read_coordinates(_write(tmp_path / "m.txt", "x y\nfoo bar\n1 2\n"))


def test_duplicates_are_dropped_keeping_the_best_score(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cryounet"):
        picks = read_coordinates(_write(tmp_path / "d.csv", "1,2,0.5\n3,4,0.1\n1,2,0.9\n"))
    assert picks.xy.tolist() == [[3, 4], [1, 2]] and picks.scores.tolist() == [0.1, 0.9]
    assert "1 duplicated coordinate(s) ignored" in caplog.text


def test_star_without_coordinate_loop_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "other.star", "data_\nloop_\n_rlnFoo #1\n_rlnBar #2\n1 2\n"),
             "no _rlnCoordinateX")
    _refused(_write(tmp_path / "simple.star", "data_general\n\n_rlnImageSize 128\n"),
             "no _rlnCoordinateX")


@pytest.mark.parametrize("text", [
    "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\nabc 4\n",
    "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnAutopickFigureOfMerit\n1 2 x\n3 4 0.5\n",
], ids=["coordinate", "score"])
def test_star_with_non_numeric_value_refused(tmp_path: Path, text: str) -> None:
    _refused(_write(tmp_path / "mic.star", text), "mic.star")


def test_garbage_star_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.star"
    path.write_bytes(b"\x00\x01\x02 garbage \xff\xfe\n")
    with pytest.raises(InputFileError) as info:
        read_coordinates(path)
    assert str(path) in str(info.value)


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "MIC.STAR",
                                    "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n5 6\n"))
    np.testing.assert_allclose(picks.xy, [[5, 6]])


# ------------------------------------------------------------------------------------------- BOX
def test_box_gives_box_centres(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic.box", "10\t20\t64\t64\n30 40 64 32 -3\n"))
    np.testing.assert_allclose(picks.xy, [[42.0, 52.0], [62.0, 56.0]])
    assert picks.scores is None


def test_empty_box(tmp_path: Path) -> None:
    assert len(read_coordinates(_write(tmp_path / "mic.box", ""))) == 0


def test_box_with_too_few_columns_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "mic.box", "10 20 64 64\n10 20\n"), "at least 4 columns")


# --------------------------------------------------------------------------------------- CSV/TXT
def test_csv_with_header_and_scores(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic.csv", "x,y,score\n1.5,2.5,0.3\n3,4,0.9\n"))
    np.testing.assert_allclose(picks.xy, [[1.5, 2.5], [3.0, 4.0]])
    np.testing.assert_allclose(picks.scores, [0.3, 0.9])


def test_csv_with_header_without_scores_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "mic.csv"
    path.write_bytes(b"x,y\r\n1.5,2.5\r\n3,4\r\n")
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[1.5, 2.5], [3.0, 4.0]])
    assert picks.scores is None


def test_txt_with_comments_header_tabs(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic.txt",
                                    "# made by hand\nx y\n1 2\n\n3\t4\n# end\n"))
    np.testing.assert_allclose(picks.xy, [[1, 2], [3, 4]])


def test_txt_scores_only_when_every_line_has_one(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "a.coords", "1 2 0.5\n3 4 0.25\n"))
    np.testing.assert_allclose(picks.scores, [0.5, 0.25])
    mixed = read_coordinates(_write(tmp_path / "b.txt", "1 2 0.5\n3 4\n"))
    assert mixed.scores is None and len(mixed) == 2


@pytest.mark.parametrize("name", ["e.csv", "e.txt", "e.coords"])
def test_empty_text_files(tmp_path: Path, name: str) -> None:
    assert len(read_coordinates(_write(tmp_path / name, "\n\n"))) == 0


def test_non_numeric_line_refused_with_line_number(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "mic.txt", "1 2\n3 abc\n"), "line 2 is not numeric")


def test_single_column_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "mic.txt", "1\n2\n"), "at least two numbers")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_coordinates_refused(tmp_path: Path, value: str) -> None:
    _refused(_write(tmp_path / "mic.txt", f"1 2\n{value} 4\n"), "NaN or infinite")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "mic.json", "{}"), "unknown coordinate format '.json'")
    _refused(tmp_path / "missing.star", "does not exist")


# -------------------------------------------------------------------------------------- Picks
def test_picks_validation_and_subset() -> None:
    with pytest.raises(ValueError, match="scores has 1 values for 2"):
        Picks([[0, 0], [1, 1]], [0.5])
    picks = Picks([[0, 0], [1, 1], [2, 2]], [0.1, 0.2, 0.3], [0.0, 0.5, 1.0])
    sub = picks.subset(np.array([2, 0]))
    np.testing.assert_array_equal(sub.xy, [[2, 2], [0, 0]])
    np.testing.assert_array_equal(sub.scores, [0.3, 0.1])
    np.testing.assert_array_equal(sub.uncertainty, [1.0, 0.0])
    assert len(Picks(np.zeros((0, 2)))) == 0


# -------------------------------------------------------------------------------------- writers
def test_star_writer_read_back_by_starfile(tmp_path: Path) -> None:
    path = tmp_path / "mic.star"
    write_star_picks(path, Picks([[1.234, 2.5], [1000.0, 20.125]], [0.9, 0.1234567]))
    blocks = starfile.read(path, always_dict=True)
    assert len(blocks) == 1
    df = next(iter(blocks.values()))
    assert list(df.columns) == ["rlnCoordinateX", "rlnCoordinateY", "rlnClassNumber",
                                "rlnAnglePsi", "rlnAutopickFigureOfMerit"]
    np.testing.assert_allclose(df["rlnCoordinateX"], [1.23, 1000.0], atol=0.006)
    np.testing.assert_allclose(df["rlnCoordinateY"], [2.5, 20.125], atol=0.006)
    np.testing.assert_array_equal(df["rlnClassNumber"], [0, 0])
    np.testing.assert_array_equal(df["rlnAnglePsi"], [-999.0, -999.0])
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], [0.9, 0.123457], atol=1e-6)
    # And by our own reader.
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[1.234, 2.5], [1000.0, 20.125]], atol=0.006)
    np.testing.assert_allclose(picks.scores, [0.9, 0.1234567], atol=1e-6)


def test_star_writer_spread_column(tmp_path: Path) -> None:
    path = tmp_path / "mic.star"
    write_star_picks(path, Picks([[5, 6], [7, 8]], [0.5, 0.6], [0.01, 0.25]))
    df = next(iter(starfile.read(path, always_dict=True).values()))
    assert list(df.columns)[-1] == UNCERTAINTY_LABEL
    np.testing.assert_allclose(df[UNCERTAINTY_LABEL], [0.01, 0.25])
    np.testing.assert_allclose(read_coordinates(path).uncertainty, [0.01, 0.25])


def test_star_writer_without_scores_writes_one(tmp_path: Path) -> None:
    path = tmp_path / "mic.star"
    write_star_picks(path, Picks([[5, 6]]))
    df = next(iter(starfile.read(path, always_dict=True).values()))
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], [1.0])


def test_star_writer_empty_picks_read_back(tmp_path: Path) -> None:
    path = tmp_path / "mic.star"
    write_star_picks(path, Picks(np.zeros((0, 2))))
    df = next(iter(starfile.read(path, always_dict=True).values()))
    assert "rlnCoordinateX" in df.columns and len(df) == 0
    assert len(read_coordinates(path)) == 0


def test_index_file_has_coordinate_files_block(tmp_path: Path) -> None:
    path = tmp_path / "coordinates.star"
    write_star_index(path, [("Micrographs/a.mrc", "picks/a.star"),
                            ("Micrographs/b.mrc", "picks/b.star")])
    blocks = starfile.read(path, always_dict=True)
    assert list(blocks) == [INDEX_BLOCK] == ["coordinate_files"]
    df = blocks["coordinate_files"]
    assert list(df.columns) == ["rlnMicrographName", "rlnMicrographCoordinates"]
    assert list(df["rlnMicrographName"]) == ["Micrographs/a.mrc", "Micrographs/b.mrc"]
    assert list(df["rlnMicrographCoordinates"]) == ["picks/a.star", "picks/b.star"]


def test_text_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mic.txt"
    write_text_picks(path, Picks([[1.5, 2.25], [3, 4]], [0.5, 0.75]))
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[1.5, 2.25], [3, 4]])
    np.testing.assert_allclose(picks.scores, [0.5, 0.75])
    write_text_picks(path, Picks(np.zeros((0, 2))))
    assert path.read_text() == "" and len(read_coordinates(path)) == 0


# --------------------------------------------------------------------------- matching by stem
def test_find_coordinate_file(tmp_path: Path) -> None:
    _write(tmp_path / "mic_001.star", "")
    _write(tmp_path / "mic_002.box", "")
    _write(tmp_path / "mic_002.mrc", "")
    assert find_coordinate_file("mic_001", tmp_path) == tmp_path / "mic_001.star"
    assert find_coordinate_file("mic_002", tmp_path) == tmp_path / "mic_002.box"
    assert find_coordinate_file("mic_003", tmp_path) is None
    _write(tmp_path / "mic_001.csv", "")
    with pytest.raises(CryoUNetError, match="several coordinate files.*mic_001"):
        find_coordinate_file("mic_001", tmp_path)


# ------------------------------------------------------------------- text tables read by header
def test_topaz_output_with_numeric_image_names(tmp_path: Path) -> None:
    """Topaz's header; a numeric image name must not be read as x."""
    path = _write(tmp_path / "14.txt", "image_name\tx_coord\ty_coord\tscore\n14\t100\t200\t0.5\n"
                                       "14\t300\t40\t-1.25\n")
    picks = read_coordinates(path)
    np.testing.assert_allclose(picks.xy, [[100, 200], [300, 40]])
    np.testing.assert_allclose(picks.scores, [0.5, -1.25])


def test_topaz_file_of_several_micrographs_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "all.txt", "image_name\tx_coord\ty_coord\tscore\n14\t100\t200\t0.5\n"
                                        "15\t300\t40\t0.2\n")
    _refused(path, "holds picks of 2 micrographs .*14, 15.*split")


@pytest.mark.parametrize("text", [",x,y\n0,10,20\n1,30,40\n", "Unnamed: 0,x,y\n0,10,20\n1,30,40\n",
                                  "\tx\ty\n0\t10\t20\n1\t30\t40\n", " x y\n0 10 20\n1 30 40\n"],
                         ids=["csv", "unnamed", "tab", "space"])
def test_pandas_index_column_ignored(tmp_path: Path, text: str) -> None:
    assert read_coordinates(_write(tmp_path / "m.csv", text)).xy.tolist() == [[10, 20], [30, 40]]


def test_y_x_header_order_honoured(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "m.csv", "y,x,confidence\n20,10,0.5\n40,30,0.25\n"))
    assert picks.xy.tolist() == [[10, 20], [30, 40]] and picks.scores.tolist() == [0.5, 0.25]


@pytest.mark.parametrize("header, expected", [
    ("X-Coordinate,Y-Coordinate,Diameter", None),  # CryoPPP's CSV (centres)
    ("_rlnCoordinateX,_rlnCoordinateY,_rlnAutopickFigureOfMerit", [0.5]),
    ("x_coord,y_coord,scores", [0.5]),
    ("class,x,y", None),  # another named column is not used
])
def test_known_header_names(tmp_path: Path, header: str, expected: list[float] | None) -> None:
    rows = "1,10,20\n" if header.startswith("class") else "10,20,0.5\n"
    picks = read_coordinates(_write(tmp_path / "m.csv", f"{header}\n{rows}"))
    assert picks.xy.tolist() == [[10, 20]]
    assert (picks.scores is None if expected is None else picks.scores.tolist() == expected)


@pytest.mark.parametrize("text, match", [
    ("x,y,x\n1,2,3\n", "names column 'x' twice"),
    ("x,y,X\n1,2,3\n", "names column 'X' twice"),
    ("a,b\n1,2\n", "names no x and y columns"),
    ("x,score\n1,2\n", "names no x and y columns"),
    ("x,x_coord,y\n1,2,3\n", "'x' and 'x_coord' both look like the x column"),
    ("x,y,score,confidence\n1,2,3,4\n", "both look like the score column"),
    ("x,y,w,h\n1,2,3,4\n", "box corners"),
    ("x,,y\n1,2,3\n", "column 2 has no name"),
    ("x,y\n1,2,3\n", "line 2 has 3 values for the 2 columns"),
    ("x,y,score\n1,2,nan\n", "a score that is not a finite number"),
    ("x y score\n1 2 inf\n", "a score that is not a finite number"),
    ("1 2 3 4\n5 6 7 8\n", "4 columns without a header"),
], ids=["repeated", "repeated-case", "unknown", "no-y", "two-x", "two-scores", "sizes", "unnamed",
        "row-length", "nan-score", "inf-score", "headerless-4"])
def test_ambiguous_text_tables_refused(tmp_path: Path, text: str, match: str) -> None:
    _refused(_write(tmp_path / "m.csv", text), match)


# -------------------------------------------------------------------- STAR layouts and shifts
def _star(*blocks: str) -> str:
    return "\n".join(blocks)


LOOP = "loop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"


def test_star_loop_without_data_line_is_read_in_full(tmp_path: Path) -> None:
    """Never 0 particles (train would treat the labelled particles as background)."""
    rows = "".join(f"{10 * i} {5 * i + 1}\n" for i in range(1, 21))
    picks = read_coordinates(_write(tmp_path / "m.star", LOOP + rows))
    assert len(picks) == 20 and picks.xy[-1].tolist() == [200, 101]


@pytest.mark.parametrize("text", [
    _star("data_a", LOOP, "1 2", "data_b", LOOP, "3 4"),
    _star("data_", LOOP, "1 2", "", LOOP, "3 4"),
    _star("data_", "_rlnCoordinateX 1", "_rlnCoordinateY 2", LOOP, "3 4"),
], ids=["two-blocks", "two-loops", "pairs-and-loop"])
def test_star_with_several_coordinate_loops_refused(tmp_path: Path, text: str) -> None:
    _refused(_write(tmp_path / "m.star", text), "holds 2 coordinate loops .*merge the loops or split")


@pytest.mark.parametrize("text, match", [
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateX\n1 2 3\n",
     "line 5: label _rlnCoordinateX is repeated"),
    ("data_\n_rlnCoordinateX 1\n_rlnCoordinateY 2\n_rlnCoordinateX 3\n", "given twice in data_"),
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnAutopickFigureOfMerit\n1 2 nan\n",
     "a score that is not a finite number"),
    ("data_\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\n'a b.mrc 1 2\n",
     "unterminated ' quote"),
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n;text\n", "multi-line"),
])
def test_star_structure_errors_refused(tmp_path: Path, text: str, match: str) -> None:
    _refused(_write(tmp_path / "m.star", text), match)


def test_star_quoted_values_with_hash_and_spaces(tmp_path: Path) -> None:
    text = ("data_\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
            "\"run #2/mic 1.mrc\" 10 20 # a comment\n'run #2/mic 1.mrc' 30 40\n")
    assert read_coordinates(_write(tmp_path / "m.star", text)).xy.tolist() == [[10, 20], [30, 40]]


def test_star_origin_in_pixels_is_subtracted(tmp_path: Path) -> None:
    """RELION re-centres a particle at X - _rlnOriginX (relion_autopick's particle-to-coordinate
    conversion: xcoord -= xoff / angpix)."""
    text = "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnOriginX\n_rlnOriginY\n100 200 3 -4\n"
    assert read_coordinates(_write(tmp_path / "m.star", text)).xy.tolist() == [[97, 204]]


OPTICS = ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnMicrographPixelSize\n_rlnImagePixelSize\n"
          "1 2.0 4.0\n2 0.5 4.0\n")
PARTICLES = ("data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnOriginXAngst\n"
             "_rlnOriginYAngst\n_rlnOpticsGroup\n100 200 4.0 -2.0 1\n100 200 4.0 -2.0 2\n")


def test_star_origin_in_angstrom_uses_the_micrograph_pixel_size(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "m.star", OPTICS + PARTICLES))
    assert picks.xy.tolist() == [[98, 201], [92, 204]]  # 2 A/px for group 1, 0.5 A/px for group 2
    one_group = OPTICS.replace("2 0.5 4.0\n", "") + PARTICLES.replace(" 2\n", " 1\n")
    assert read_coordinates(_write(tmp_path / "one.star", one_group)).xy.tolist() == [[98, 201]]


@pytest.mark.parametrize("text, match", [
    (PARTICLES, "need the micrograph pixel size"),
    (OPTICS.replace("_rlnMicrographPixelSize", "_rlnMicrographPixelSizeX") + PARTICLES,
     "need the micrograph pixel size"),
    (OPTICS.replace("_rlnOpticsGroup\n", "_rlnOpticsGroupName\n") + PARTICLES,
     "several _rlnMicrographPixelSize values"),
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnOriginX\n1 2 3\n", "without its Y/X partner"),
    ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnOriginX\n_rlnOriginY\n_rlnOriginXAngst\n"
     "_rlnOriginYAngst\n1 2 3 4 5 6\n", "both _rlnOriginX/Y"),
], ids=["no-pixel-size", "image-pixel-size-only", "groups-unnamed", "x-only", "both-units"])
def test_star_origin_shift_that_cannot_be_applied_refused(tmp_path: Path, text: str, match: str) -> None:
    _refused(_write(tmp_path / "m.star", text), match)


def test_star_zero_origin_in_angstrom_needs_no_pixel_size(tmp_path: Path) -> None:
    text = PARTICLES.replace("4.0 -2.0", "0.0 0.0")
    assert read_coordinates(_write(tmp_path / "m.star", text)).xy.tolist() == [[100, 200]] * 1


# ----------------------------------------------------------------------------------- crYOLO CBOX
CBOX = """
data_global

_cbox_format_version 1.0

data_cryolo

loop_
_CoordinateX #1
_CoordinateY #2
_CoordinateZ #3
_Width #4
_Height #5
_Depth #6
_EstWidth #7
_EstHeight #8
_Confidence #9
_NumBoxes #10
_Angle #11
10.0 20.0 <NA> 64 64 <NA> 60 58 0.91 <NA> <NA>
100 200 <NA> 64 32 <NA> <NA> <NA> 0.42 <NA> <NA>

data_cryolo_include

loop_
_slice_index #1
"""


def test_cryolo_star_cbox_gives_box_centres_and_confidence(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic.cbox", CBOX))
    assert picks.xy.tolist() == [[42, 52], [132, 216]] and picks.scores.tolist() == [0.91, 0.42]


def test_cryolo_old_text_cbox(tmp_path: Path) -> None:
    picks = read_coordinates(_write(tmp_path / "mic.cbox", "10\t20\t64\t64\t0.9\t60\t58\n30 40 64 32 0.2\n"))
    assert picks.xy.tolist() == [[42, 52], [62, 56]] and picks.scores.tolist() == [0.9, 0.2]
    _refused(_write(tmp_path / "bad.cbox", "10 20 64 64\n"), "at least 5 columns")


def test_cryolo_tomogram_cbox_refused(tmp_path: Path) -> None:
    _refused(_write(tmp_path / "t.cbox", CBOX.replace("10.0 20.0 <NA>", "10.0 20.0 7")), "tomogram")


# ------------------------------------------------------------------------- matching by name
@pytest.mark.parametrize("name", ["mic.star", "mic_autopick.star", "mic_manualpick.star", "mic_picks.star",
                                  "mic.cbox", "mic_autopick.csv", "mic.box"])
def test_relion_and_cryolo_names_match_their_micrograph(tmp_path: Path, name: str) -> None:
    _write(tmp_path / name, "")
    _write(tmp_path / "other_autopick.star", "")
    assert find_coordinate_file("mic", tmp_path) == tmp_path / name
    assert list_coordinate_files(tmp_path) == {"mic": tmp_path / name, "other": tmp_path / "other_autopick.star"}


def test_two_files_for_one_micrograph_refused_naming_both(tmp_path: Path) -> None:
    _write(tmp_path / "mic.star", "")
    _write(tmp_path / "mic_autopick.star", "")
    for call in (lambda: find_coordinate_file("mic", tmp_path), lambda: list_coordinate_files(tmp_path)):
        with pytest.raises(CryoUNetError, match="several coordinate files for micrograph 'mic': "
                                                "mic.star, mic_autopick.star"):
            call()


def test_a_file_named_after_a_micrograph_belongs_to_it(tmp_path: Path) -> None:
    """Micrographs a.mrc and a_picks.mrc: a_picks.star is a_picks's, not a's."""
    _write(tmp_path / "a_picks.star", "")
    assert find_coordinate_file("a", tmp_path, {"a", "a_picks"}) is None
    assert find_coordinate_file("a_picks", tmp_path, {"a", "a_picks"}) == tmp_path / "a_picks.star"
    assert list_coordinate_files(tmp_path, stems={"a", "a_picks"}) == {"a_picks": tmp_path / "a_picks.star"}
    assert list_coordinate_files(tmp_path) == {"a": tmp_path / "a_picks.star"}
    assert coordinate_stem("x/mic_manualpick.star") == "mic" and coordinate_stem("_picks.star") == "_picks"


# ------------------------------------------------------------------- index with awkward paths
AWKWARD = [("Movies #2/mic 1.mrc", "picks #2/mic 1.star"), ("a'b/c.mrc", "p/c.star"),
           ('q"x/d.mrc', "p/d.star"), ("_under/e.mrc", "data_x/e.star"), ("", "p/f.star")]


def test_index_survives_hash_spaces_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "coordinates.star"
    write_star_index(path, AWKWARD)
    assert read_star_index(path) == {Path(c).stem: m for m, c in AWKWARD}
    # starfile (RELION's Python reader) reads back the paths with '#' and spaces too
    df = starfile.read(path, always_dict=True)[INDEX_BLOCK]
    assert list(df["rlnMicrographName"])[0] == "Movies #2/mic 1.mrc"
    assert list(df["rlnMicrographCoordinates"])[0] == "picks #2/mic 1.star"


@pytest.mark.parametrize("value, written", [("plain/a.mrc", "plain/a.mrc"), ("a #1", '"a #1"'),
                                            ("x#y", '"x#y"'), ("", '""'), ("it's here", "\"it's here\""),
                                            ('say "hi" now', "'say \"hi\" now'"), ("loop_x", '"loop_x"')])
def test_star_value_quoting(value: str, written: str) -> None:
    assert star_value(value) == written
    assert split_star_line(f"{written} 5") == [value, "5"]


def test_star_value_that_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line break"):
        star_value("a\nb")
    with pytest.raises(CryoUNetError, match="cannot index a path"):
        write_star_index(tmp_path / "i.star", [("""a" b' c""", "p.star")])
    assert not (tmp_path / "i.star").exists()
