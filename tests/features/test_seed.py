"""Seed datasets: formats, sampling and partitions that are exact and resumable, streaming by block, errors."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rowloom import DatasetBuilder
from rowloom.config import DatasetConfig, SeedConfig
from rowloom.engine import seed_reader as seed_module
from rowloom.engine.job import run_job
from rowloom.engine.seed_reader import SeedMapping, SeedReader
from rowloom.errors import ConfigError

from .helpers import docs_table, offline, write_seed

LENGTH = [{"name": "n_chars", "type": "expression", "expr": "text | length", "dtype": "int"}]


# ------------------------------------------------------------------ mapping


def test_shuffle_without_replacement_is_an_exact_seeded_permutation():
    for size in (1, 2, 7, 1000, 4097):
        mapping = SeedMapping(0, size, shuffle=True, with_replacement=False, seed=42)
        rows = mapping.rows(0, size)
        assert sorted(rows.tolist()) == list(range(size))
    a = SeedMapping(0, 1000, shuffle=True, with_replacement=False, seed=1).rows(0, 1000)
    b = SeedMapping(0, 1000, shuffle=True, with_replacement=False, seed=2).rows(0, 1000)
    assert a.tolist() != b.tolist() and a.tolist() != list(range(1000))


def test_mapping_is_a_pure_function_of_the_output_row():
    for shuffle in (False, True):
        for replace in (False, True):
            mapping = SeedMapping(10, 110, shuffle=shuffle, with_replacement=replace, seed=5)
            whole = mapping.rows(0, 100).tolist()
            pieces = [mapping.rows(s, 10).tolist() for s in range(0, 100, 10)]
            assert whole == [r for piece in pieces for r in piece]
            again = SeedMapping(10, 110, shuffle=shuffle, with_replacement=replace, seed=5)
            assert again.rows(37, 20).tolist() == whole[37:57]
            assert all(10 <= r < 110 for r in whole)


def test_ordered_with_replacement_cycles_and_shuffled_with_replacement_draws():
    ordered = SeedMapping(0, 3, shuffle=False, with_replacement=True, seed=0).rows(0, 7).tolist()
    assert ordered == [0, 1, 2, 0, 1, 2, 0]
    draws = SeedMapping(0, 10, shuffle=True, with_replacement=True, seed=0).rows(0, 5000)
    counts = np.bincount(draws, minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # uniform draws, with repeats


def test_partitions_split_the_index_range_into_contiguous_disjoint_parts(tmp_path):
    path = write_seed(docs_table(103), tmp_path / "docs.parquet")
    parts = []
    for index in range(4):
        seed = SeedConfig(path=str(path), index_range=(3, 103), partition={"index": index, "count": 4})
        reader = SeedReader(seed, run_seed=0)
        parts.append(reader.read(0, reader.mapping.size).column("doc_id").to_pylist())
    assert [len(p) for p in parts] == [25, 25, 25, 25]
    assert [x for p in parts for x in p] == list(range(3, 103))


# ------------------------------------------------------------------ formats and streaming


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
async def test_every_format_feeds_columns_with_seed_types(tmp_path, suffix):
    path = write_seed(docs_table(40), tmp_path / f"docs{suffix}", row_group_size=16)
    config = offline(LENGTH, seed={"path": str(path)})
    result = await run_job(config, 40, output=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.column_names == ["doc_id", "text", "n_chars"]
    assert table.schema.field("doc_id").type == pa.int64()
    assert table.column("doc_id").to_pylist() == list(range(40))
    assert table.column("n_chars").to_pylist() == [len(t) for t in table.column("text").to_pylist()]
    assert result.summary["seed_dataset"]["rows"] == 40


def test_text_seeds_are_indexed_and_parsed_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(seed_module, "TEXT_BLOCK_ROWS", 7)
    path = tmp_path / "tricky.csv"
    lines = ["id,text,score\n"]
    for i in range(50):
        text = f'"line {i}\nhas a newline, a comma and ""quotes"""' if i % 3 == 0 else f"plain {i}"
        lines.append(f"{i},{text},{i / 2}\n")
        if i % 10 == 0:
            lines.append("\n")  # blank lines are not records
    path.write_text("".join(lines))
    reader = SeedReader(SeedConfig(path=str(path)), run_seed=0)
    assert reader.num_rows == 50
    table = reader.read(0, 50)
    assert table.column("id").to_pylist() == list(range(50))
    assert table.column("text")[3].as_py() == 'line 3\nhas a newline, a comma and "quotes"'
    assert table.schema.field("score").type == pa.float64()
    assert reader.stats.max_block_rows <= 7
    shuffled = SeedReader(SeedConfig(path=str(path), sampling="shuffle", seed=3), run_seed=0).read(0, 50)
    assert sorted(shuffled.column("id").to_pylist()) == list(range(50))

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"id": i, "tags": ["a"] * (i % 3)}) + "\n" + ("\n" if i % 4 else "") for i in range(30))
    )
    table = SeedReader(SeedConfig(path=str(jsonl)), run_seed=0).read(0, 30)
    assert table.column("id").to_pylist() == list(range(30))
    assert pa.types.is_list(table.schema.field("tags").type)


@pytest.mark.parametrize("trial", range(6))
def test_text_index_matches_a_whole_file_parse_at_any_chunk_and_block_size(tmp_path, monkeypatch, trial):
    """Random CSV/JSONL files (quoted newlines, CRLF, blank and whitespace lines, no final newline) read
    block by block give exactly what pyarrow reads from the whole file."""
    import random

    import pyarrow.csv as pcsv
    import pyarrow.json as pjson

    rng = random.Random(trial)
    monkeypatch.setattr(seed_module, "_SCAN_BYTES", rng.choice([5, 13, 64, 1 << 20]))
    monkeypatch.setattr(seed_module, "TEXT_BLOCK_ROWS", rng.choice([1, 3, 50]))
    monkeypatch.setattr(seed_module, "TEXT_BLOCK_BYTES", rng.choice([16, 200, 1 << 20]))
    eol = rng.choice(["\n", "\r\n"])
    n = rng.randint(1, 60)
    words = ["a", "b c", 'say "hi"', "two\nlines", "", "x,y"]
    csv_lines, json_lines = ["id,text" + eol], []
    for i in range(n):
        text = rng.choice(words)
        quoted = '"' + text.replace('"', '""') + '"' if any(c in text for c in '",\n') else text
        csv_lines.append(f"{i},{quoted}{eol}")
        json_lines.append(json.dumps({"id": i, "text": text}) + eol)
        if rng.random() < 0.2:
            csv_lines.append(eol)
            json_lines.append(rng.choice([eol, "   " + eol]))
    for lines in (csv_lines, json_lines):
        lines[-1] = lines[-1].rstrip("\r\n") if rng.random() < 0.5 else lines[-1]
    csv_path, json_path = tmp_path / "t.csv", tmp_path / "t.jsonl"
    csv_path.write_bytes("".join(csv_lines).encode())
    json_path.write_bytes("".join(json_lines).encode())
    expected_csv = pcsv.read_csv(csv_path, parse_options=pcsv.ParseOptions(newlines_in_values=True))
    expected_json = pjson.read_json(json_path)
    for path, expected in ((csv_path, expected_csv), (json_path, expected_json)):
        reader = SeedReader(SeedConfig(path=str(path)), run_seed=0)
        assert reader.num_rows == n == expected.num_rows
        got = reader.read(0, n)
        assert got.column("id").to_pylist() == list(range(n))
        assert got.column("text").to_pylist() == expected.column("text").to_pylist()


async def test_a_100k_row_seed_is_read_one_row_group_at_a_time(tmp_path):
    """The reader never holds more than one seed row group, and ordered reads decode each about once."""
    path = write_seed(docs_table(100_000), tmp_path / "big.parquet", row_group_size=10_000)
    config = offline(
        LENGTH,
        seed={"path": str(path)},
        processors=[{"type": "drop_columns", "columns": ["text"]}],
        run={"row_group_size": 2_000, "max_row_groups_in_flight": 8},
    )
    result = await run_job(config, 100_000, output=tmp_path / "out")
    stats = result.summary["seed_dataset"]
    assert stats["rows"] == 100_000 and stats["max_block_rows"] == 10_000  # never more than one row group
    # Seed tasks of neighbouring row groups may interleave; a row group is decoded again only at a boundary.
    assert 10 <= stats["blocks_read"] <= 20
    table = pq.read_table(tmp_path / "out" / "data")
    assert table.num_rows == 100_000 and table.column_names == ["doc_id", "n_chars"]
    assert table.column("doc_id").to_pylist() == list(range(100_000))


def test_a_shuffled_read_decodes_one_block_at_a_time(tmp_path, monkeypatch):
    path = write_seed(docs_table(1000), tmp_path / "docs.parquet", row_group_size=100)
    reader = SeedReader(SeedConfig(path=str(path), sampling="shuffle", seed=9), run_seed=0)
    live: list[int] = []
    decode = reader._source._decode

    def counting(block):
        live.append(0 if reader._source._cached is None else 1)  # a cached block is released before decoding
        return decode(block)

    monkeypatch.setattr(reader._source, "_decode", counting)
    rows = reader.read(0, 1000).column("doc_id").to_pylist()
    assert sorted(rows) == list(range(1000))
    assert set(live) == {0} and reader.stats.max_block_rows == 100


async def test_dataframe_seeds_and_typed_values(tmp_path):
    frame = pd.DataFrame(
        {
            "k": [1, 2, 3],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
            "xs": [[1.5], [2.5, 3.5], []],
        }
    )
    double = {"name": "k2", "type": "expression", "expr": "k * 2", "dtype": "int"}
    config = DatasetBuilder().with_seed(frame).add_column(double).with_run(row_group_size=2).build()
    result = await run_job(config, 3, output=tmp_path / "out")
    table = result.to_arrow()
    assert pa.types.is_timestamp(table.schema.field("when").type)
    assert table.schema.field("xs").type == pa.list_(pa.float64())
    assert table.column("when")[1].as_py() == dt.datetime(2024, 2, 1)
    assert table.column("k2").to_pylist() == [2, 4, 6]
    with pytest.raises(ConfigError, match="in-memory DataFrame"):
        config.to_yaml()
    # A config loaded with a sample file takes the full DataFrame in Python (same columns).
    sample = write_seed(pa.Table.from_pandas(frame.head(1)), tmp_path / "sample.parquet")
    swapped = offline([double], seed={"path": str(sample)}).with_seed(frame, sampling="shuffle", seed=1)
    result = await run_job(swapped, 3, output=tmp_path / "out2")
    assert sorted(result.to_arrow().column("k2").to_pylist()) == [2, 4, 6]
    assert swapped.fingerprint() != offline([double], seed={"path": str(sample)}).fingerprint()


async def test_resume_reads_the_same_seed_rows(tmp_path):
    """With the shuffle seed taken from the run seed (random, kept in the manifest), a resumed run reads the
    same seed rows for the row groups it still has to write."""
    path = write_seed(docs_table(60), tmp_path / "docs.parquet", row_group_size=25)
    config = offline(LENGTH, seed={"path": str(path), "sampling": "shuffle"}, run={"row_group_size": 10, "seed": None})
    out = tmp_path / "out"
    await run_job(config, 50, output=out)
    first = pq.read_table(out / "data").column("doc_id").to_pylist()
    assert sorted(first) == sorted(set(first))  # without replacement: no seed row twice
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["row_groups"][2:]:
        (out / entry["file"]).unlink()
    manifest["row_groups"] = manifest["row_groups"][:2]
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = await run_job(config, 50, output=out)
    assert result.summary["records_resumed"] == 20 and result.summary["records_written_this_run"] == 30
    assert pq.read_table(out / "data").column("doc_id").to_pylist() == first


# ------------------------------------------------------------------ errors


def test_missing_seed_file_names_seed_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        offline(LENGTH, seed={"path": str(tmp_path / "nope.parquet")})
    assert info.value.problems[0].path == "seed.path" and "not found" in str(info.value)


def test_unknown_seed_column_names_the_column_and_lists_seed_columns(tmp_path):
    path = write_seed(docs_table(5), tmp_path / "docs.csv")
    columns = [{"name": "x", "type": "expression", "expr": "body | length"}]
    with pytest.raises(ConfigError) as info:
        offline(columns, seed={"path": str(path)})
    message = str(info.value)
    assert "columns[0] (x)" in message and "'body'" in message and "seed columns: doc_id, text" in message
    with pytest.raises(ConfigError, match=r"seed.columns: 'body' not in the seed"):
        offline(LENGTH, seed={"path": str(path), "columns": ["text", "body"]})


async def test_more_records_than_seed_rows_without_replacement_is_a_clear_error(tmp_path):
    path = write_seed(docs_table(20), tmp_path / "docs.parquet")
    config = offline(LENGTH, seed={"path": str(path), "index_range": [0, 15]})
    with pytest.raises(ConfigError) as info:
        await run_job(config, 16, output=tmp_path / "out")
    assert info.value.problems[0].path == "num_records"
    assert "15 rows" in str(info.value) and "with_replacement" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing was started
    replaced = offline(LENGTH, seed={"path": str(path), "index_range": [0, 15], "with_replacement": True})
    result = await run_job(replaced, 40, output=tmp_path / "out2")
    assert result.to_arrow().column("doc_id").to_pylist() == [i % 15 for i in range(40)]


def test_bad_seed_settings_name_their_field(tmp_path):
    path = write_seed(docs_table(20), tmp_path / "docs.parquet")
    cases = {
        "seed.partition": {"partition": {"index": 4, "count": 4}},
        "seed.index_range": {"index_range": [5, 5]},
        "seed.format": {"path": str(tmp_path / "docs.xlsx")},
    }
    (tmp_path / "docs.xlsx").write_text("x")
    for field, settings in cases.items():
        with pytest.raises(ConfigError) as info:
            offline(LENGTH, seed={"path": str(path), **settings})
        assert info.value.problems[0].path.startswith(field), (field, str(info.value))
    with pytest.raises(ConfigError, match=r"seed\.index_range: end 30 is past the seed's 20 rows"):
        SeedReader(SeedConfig(path=str(path), index_range=(0, 30)), run_seed=0)
    with pytest.raises(ConfigError, match="already writes"):
        offline([{"name": "text", "type": "expression", "expr": "doc_id"}], seed={"path": str(path)})


def test_seed_round_trips_through_yaml(tmp_path):
    path = write_seed(docs_table(20), tmp_path / "docs.jsonl")
    config = offline(
        LENGTH,
        seed={"path": str(path), "sampling": "shuffle", "seed": 4, "partition": {"index": 1, "count": 2}},
    )
    assert DatasetConfig.from_yaml_string(config.to_yaml()) == config
