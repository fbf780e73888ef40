"""Reading prompt sets: formats, ids, limits, and what goes wrong."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from batchrun.config import InputSpec
from batchrun.dataset import PROMPT_ID, read_dataset
from batchrun.errors import JobError


def frame(n: int = 4) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(n)), "text": [f"t{i}" for i in range(n)]})


def test_parquet_and_csv_give_same_ids(tmp_path: Path) -> None:
    """The same prompts as Parquet or CSV read to the same ids and columns."""
    frame().write_parquet(tmp_path / "a.parquet")
    frame().write_csv(tmp_path / "a.csv")
    a = read_dataset(InputSpec(path="a.parquet", id_column="id"), tmp_path)
    b = read_dataset(InputSpec(path="a.csv", id_column="id"), tmp_path)
    assert a[PROMPT_ID].to_list() == b[PROMPT_ID].to_list() == ["0", "1", "2", "3"]
    assert a.columns == b.columns == [PROMPT_ID, "id", "text"]


def test_glob_and_folder(tmp_path: Path) -> None:
    """A glob or a folder reads every matching file."""
    (tmp_path / "d").mkdir()
    frame(2).write_parquet(tmp_path / "d" / "one.parquet")
    pl.DataFrame({"id": [7], "text": ["x"]}).write_csv(tmp_path / "d" / "two.csv")
    by_glob = read_dataset(InputSpec(path="d/*.parquet", id_column="id"), tmp_path)
    by_folder = read_dataset(InputSpec(path="d", id_column="id"), tmp_path)
    assert by_glob.height == 2
    assert sorted(by_folder[PROMPT_ID].to_list()) == ["0", "1", "7"]


def test_hash_ids_are_stable(tmp_path: Path) -> None:
    """Without an id column each row gets a content hash, the same on every read."""
    frame().drop("id").write_parquet(tmp_path / "a.parquet")
    first = read_dataset(InputSpec(path="a.parquet"), tmp_path)[PROMPT_ID].to_list()
    second = read_dataset(InputSpec(path="a.parquet"), tmp_path)[PROMPT_ID].to_list()
    assert first == second
    assert len(set(first)) == 4


def test_repeated_rows_get_distinct_ids(tmp_path: Path) -> None:
    """Identical rows are kept apart, not collapsed."""
    pl.DataFrame({"text": ["a", "a", "b"]}).write_parquet(tmp_path / "a.parquet")
    ids = read_dataset(InputSpec(path="a.parquet"), tmp_path)[PROMPT_ID].to_list()
    assert len(set(ids)) == 3
    assert ids[1] == ids[0] + "-1"


def test_limit(tmp_path: Path) -> None:
    """`limit` keeps the first N rows."""
    frame(10).write_parquet(tmp_path / "a.parquet")
    assert read_dataset(InputSpec(path="a.parquet", limit=3), tmp_path).height == 3


@pytest.mark.parametrize(
    ("setup", "spec", "expected"),
    [
        (lambda p: None, InputSpec(path="none.parquet"), "none.parquet does not exist"),
        (
            lambda p: (p / "a.parquet").write_text("not parquet"),
            InputSpec(path="a.parquet"),
            "not a readable Parquet file",
        ),
        (
            lambda p: (p / "a.csv").write_bytes(b"id,text\n1,\xff\xfe bad\n"),
            InputSpec(path="a.csv"),
            "not UTF-8",
        ),
        (
            lambda p: (p / "a.csv").write_text("id,text\n1,a\n2,b,c,d\n"),
            InputSpec(path="a.csv"),
            "differing numbers of fields",
        ),
        (
            lambda p: pl.DataFrame(
                {"id": [], "text": []}, schema={"id": pl.Int64, "text": pl.String}
            ).write_parquet(p / "a.parquet"),
            InputSpec(path="a.parquet"),
            "has no rows",
        ),
        (
            lambda p: frame().write_parquet(p / "a.parquet"),
            InputSpec(path="a.parquet", id_column="key"),
            "column 'key' is not in a.parquet",
        ),
        (
            lambda p: pl.DataFrame({"id": [1, 1], "t": ["a", "b"]}).write_parquet(p / "a.parquet"),
            InputSpec(path="a.parquet", id_column="id"),
            "repeats the id '1'",
        ),
        (
            lambda p: pl.DataFrame({"id": [1, None], "t": ["a", "b"]}).write_parquet(
                p / "a.parquet"
            ),
            InputSpec(path="a.parquet", id_column="id"),
            "1 empty value(s), the first in data row 2",
        ),
        (lambda p: None, InputSpec(path="*.parquet"), "no Parquet or CSV file matches"),
        (
            lambda p: (p / "a.json").write_text("{}"),
            InputSpec(path="a.json"),
            "neither .parquet nor .csv",
        ),
    ],
    ids=[
        "missing",
        "not-parquet",
        "bad-encoding",
        "ragged",
        "empty",
        "no-id-column",
        "duplicate-ids",
        "null-ids",
        "glob-no-match",
        "wrong-suffix",
    ],
)
def test_bad_input(tmp_path: Path, setup, spec: InputSpec, expected: str) -> None:  # type: ignore[no-untyped-def]
    """Each broken input is one clear JobError naming what is wrong."""
    setup(tmp_path)
    with pytest.raises(JobError) as info:
        read_dataset(spec, tmp_path)
    assert expected in str(info.value)
    assert str(info.value).startswith("input.")


def test_mixed_columns_in_a_glob_are_refused_unless_union(tmp_path: Path) -> None:
    """Files of a glob must share their columns; union: true combines them."""
    pl.DataFrame({"q": ["a"]}).write_csv(tmp_path / "a.csv")
    pl.DataFrame({"q": ["b"], "extra": [1]}).write_csv(tmp_path / "b.csv")
    with pytest.raises(JobError, match=r"a.csv and b.csv have different columns \(extra\)"):
        read_dataset(InputSpec(path="*.csv"), tmp_path)
    frame = read_dataset(InputSpec(path="*.csv", union=True), tmp_path)
    assert frame.height == 2 and "extra" in frame.columns
