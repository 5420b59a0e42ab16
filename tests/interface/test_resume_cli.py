"""`rowloom run` into a folder that already holds something: nothing to do, extend, refuse, each with its message.

Every case runs the real CLI (typer's runner, in process) against a simulator process on 127.0.0.1 and checks the
exit code, the key phrases of the one-line message and, where nothing may change, every file byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import rowloom
from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.errors import OutputError
from rowloom.interface.cli import app

GROUP = 10


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.001, models=("sim-small",))) as server:
        yield server


def config_dict(base_url: str) -> dict:
    return {
        "providers": [{"name": "sim", "base_url": base_url}],
        "models": [{"alias": "writer", "provider": "sim", "model": "sim-small"}],
        "columns": [
            {"name": "row_id", "type": "uuid"},
            {"name": "product", "type": "category", "values": ["kettle", "lamp", "chair"]},
            {"name": "mood", "type": "category", "values": ["happy", "angry"]},
            {
                "name": "review",
                "type": "llm_text",
                "model": "writer",
                "prompt": "A {{ mood }} review of a {{ product }}.",
            },
        ],
        "run": {"row_group_size": GROUP, "seed": 7},
    }


@pytest.fixture
def config(sim, tmp_path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config_dict(sim.base_url), sort_keys=False))
    return path


def run(config: Path, n: int, out: Path, *extra: str):
    """`rowloom run CONFIG -n N -o OUT -q ...`: (exit code, the output with line breaks folded to spaces)."""
    result = CliRunner().invoke(app, ["run", str(config), "-n", str(n), "-o", str(out), "-q", *extra])
    return result.exit_code, " ".join(result.output.split())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under the folder, by relative path: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def make_unfinished(out: Path, keep: int) -> None:
    """As if the run had stopped after `keep` row groups: later parts gone, the manifest not complete."""
    data = manifest(out)
    for entry in data["row_groups"][keep:]:
        (out / entry["file"]).unlink()
    data["row_groups"], data["complete"] = data["row_groups"][:keep], False
    data["records_written"] = sum(e["rows"] for e in data["row_groups"])
    (out / "manifest.json").write_text(json.dumps(data))


def rename_product(config: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["columns"][1]["name"] = "item"
    data["columns"][3]["prompt"] = "A {{ mood }} review of a {{ item }}."
    config.write_text(yaml.safe_dump(data, sort_keys=False))


# ------------------------------------------------------------------ a complete folder


def test_rerun_into_a_complete_folder_says_so_and_touches_nothing(sim, config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    requests = sim.stats()["requests_total"]
    code, text = run(config, 20, out)
    assert code == 0, text
    assert (
        f"{out}/ already holds a complete run of this config: 20 of 20 records — nothing to do; "
        "use a new --output, or a larger -n to extend it"
    ) in text
    assert "wrote" not in text.lower()
    assert snapshot(out) == before  # summary.json and manifest.json byte for byte, and every part
    assert sim.stats()["requests_total"] == requests  # not one request


def test_resume_always_on_a_complete_folder_is_nothing_to_do(config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    code, text = run(config, 20, out, "--resume", "always")
    assert code == 0 and "already holds a complete run of this config: 20 of 20 records — nothing to do" in text
    assert snapshot(out) == before


def test_a_larger_n_extends_the_run_as_a_fresh_run_of_that_size_would_have_written_it(config, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert run(config, 25, out)[0] == 0  # 10 + 10 + 5: the last row group is short
    first = pq.read_table(out / "data").to_pandas()
    parts_before = {k: v for k, v in snapshot(out).items() if k.startswith("data/")}
    code, text = run(config, 40, out)
    assert code == 0, text
    assert "wrote 15 records to" in text.lower() and "(40 in all)" in text  # this run's, then the total
    rows = pq.read_table(out / "data").to_pandas()
    assert len(rows) == 40 and rows["row_id"].is_unique
    assert rows.iloc[:25].equals(first)  # the rows already written, unchanged
    assert {k: v for k, v in snapshot(out).items() if k in parts_before} == parts_before  # their files untouched
    data = manifest(out)
    assert (data["num_records"], data["records_written"], data["complete"]) == (40, 40, True)
    assert data["extended_from"] == [25] and [e["rows"] for e in data["row_groups"]] == [10, 10, 5, 5, 10]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["records_resumed"], summary["records_written_this_run"]) == (25, 15)
    assert summary["requests"]["total"] == 15
    # every value, sampled or generated, is what a fresh run of 40 gives each row (the simulator replies follow
    # from the prompt)
    assert run(config, 40, fresh)[0] == 0
    assert rows.equals(pq.read_table(fresh / "data").to_pandas())


def test_a_smaller_n_than_a_complete_folder_holds_is_refused_and_changes_nothing(config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    code, text = run(config, 10, out)
    assert code == 1
    assert (
        f"{out}/ already holds a complete run of this config with 20 records and -n 10 asks for fewer; nothing changed"
    ) in text
    assert snapshot(out) == before


def test_a_smaller_n_than_an_unfinished_run_plans_is_refused(config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 30, out)[0] == 0
    make_unfinished(out, keep=1)
    before = snapshot(out)
    code, text = run(config, 20, out)
    assert code == 1
    assert (
        f"{out}/ holds an unfinished run of this config (10 of 30 records written) and -n 20 asks for fewer; "
        "nothing changed: pass -n 30 to continue it (or more to extend it), or use a new --output"
    ) in text
    assert snapshot(out) == before


# ------------------------------------------------------------------ --resume never / always / auto


def test_resume_never_on_a_complete_folder(config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    code, text = run(config, 20, out, "--resume", "never")
    assert code == 1
    assert (
        f"{out}/ already holds a complete run of this config (20 of 20 records) and --resume never only starts "
        "new runs; use a new --output"
    ) in text
    assert "--resume auto" not in text
    code, text = run(config, 30, out, "--resume", "never")
    assert code == 1 and "use a new --output, or leave out --resume never to extend it to 30" in text
    assert snapshot(out) == before


def test_resume_never_on_an_unfinished_folder(config, tmp_path):
    out = tmp_path / "out"
    assert run(config, 30, out)[0] == 0
    make_unfinished(out, keep=2)
    before = snapshot(out)
    code, text = run(config, 30, out, "--resume", "never")
    assert code == 1
    assert (
        f"{out}/ holds an unfinished run of this config (20 of 30 records written) and --resume never only starts "
        "new runs; leave out --resume never to continue it, or use a new --output"
    ) in text
    assert snapshot(out) == before


def test_an_unfinished_folder_resumes_with_auto_and_always(config, tmp_path):
    for mode in ("auto", "always"):
        out = tmp_path / mode
        assert run(config, 30, out)[0] == 0
        expected = pq.read_table(out / "data").to_pandas()
        make_unfinished(out, keep=1)
        code, text = run(config, 30, out, "--resume", mode)
        assert code == 0 and "wrote 20 records to" in text.lower() and "(30 in all)" in text, text
        assert pq.read_table(out / "data").to_pandas().equals(expected)
        assert json.loads((out / "summary.json").read_text())["records_resumed"] == 10


def test_resume_always_without_a_run_creates_nothing(config, tmp_path):
    out = tmp_path / "nothing-here"
    code, text = run(config, 20, out, "--resume", "always")
    assert code == 1
    assert (
        f"--resume always, but {out}/ holds no run to resume (no manifest.json); leave out --resume always to "
        "start one there"
    ) in text
    assert not out.exists()


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_a_different_config_is_named_by_column_name(config, tmp_path, mode):
    out = tmp_path / "out"
    assert run(config, 20, out)[0] == 0
    before = snapshot(out)
    rename_product(config)
    code, text = run(config, 20, out, "--resume", mode)
    assert code == 1
    assert (
        f"{out}/ holds a run of a different config: column 'product' was renamed or removed, column 'item' is new, "
        "column 'review' changed (prompt); it was written with columns row_id, product, mood, review; "
        "use a new --output, or restore the config"
    ) in text
    assert "columns[" not in text
    assert snapshot(out) == before


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_a_folder_that_is_not_a_rowloom_output_is_refused(config, tmp_path, mode):
    web = tmp_path / "web"
    web.mkdir()
    (web / "manifest.json").write_text('{"name": "my app", "icons": []}')
    code, text = run(config, 20, web, "--resume", mode)
    assert code == 1
    assert f"{web}/ is not a rowloom output: its manifest.json is another program's; use a new --output" in text
    stray = tmp_path / "stray"
    (stray / "data").mkdir(parents=True)
    (stray / "data" / "other.parquet").write_bytes(b"PAR1")
    code, text = run(config, 20, stray, "--resume", mode)
    assert code == 1
    assert (
        f"{stray}/ is not a rowloom output: {stray}/data/ holds 1 file but there is no manifest.json; "
        f"use a new --output, or move {stray}/data/ away"
    ) in text
    assert sorted(p.name for p in stray.rglob("*")) == ["data", "other.parquet"]


def test_an_unreadable_manifest_says_how_to_go_on(config, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("not json")
    code, text = run(config, 20, out)
    assert code == 1
    assert f"{out}/manifest.json is unreadable (" in text
    assert "move it away to start a new run there, or use a new --output" in text


# ------------------------------------------------------------------ the Python API speaks of its own arguments


def test_the_python_api_names_its_own_arguments(config, tmp_path):
    out = tmp_path / "out"
    first = rowloom.generate(config, 20, output=out)
    assert first.generated and len(first.to_pandas()) == 20
    before = snapshot(out)
    again = rowloom.generate(config, 20, output=out)
    assert not again.generated and again.to_pandas().equals(first.to_pandas())
    assert again.message.endswith("nothing to do; use a new output=, or a larger num_records= to extend it")
    assert again.summary == json.loads((out / "summary.json").read_text())
    with pytest.raises(OutputError) as never:
        rowloom.generate(config, 20, output=out, resume="never")
    assert "resume='never' only starts new runs; use a new output=" in str(never.value)
    with pytest.raises(OutputError) as fewer:
        rowloom.generate(config, 10, output=out)
    assert "num_records=10 asks for fewer" in str(fewer.value)
    with pytest.raises(OutputError) as always:
        rowloom.generate(config, 20, output=tmp_path / "none", resume="always")
    assert str(always.value).startswith("resume='always', but ")
    with pytest.raises(OutputError) as scheme:
        rowloom.generate(config, 20, output="nosuch://x/y")
    assert str(scheme.value).startswith("output='nosuch://x/y' is not a usable pyarrow.fs URI")
    rename_product(config)
    with pytest.raises(OutputError) as other:
        rowloom.generate(config, 20, output=out)
    assert "column 'product' was renamed or removed" in str(other.value)
    for error in (never, fewer, always, scheme, other):
        assert "--" not in str(error.value)
    assert snapshot(out) == before
