"""Runs on a local Ray instance: two workers share one endpoint's limit, match a single process, survive a kill."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("ray", reason="the Ray executor needs the optional extra: pip install 'rowloom[ray]'")

import ray

from rowloom.bench.sim_process import SimulatorProcess
from rowloom.bench.simulator import SimulatorConfig
from rowloom.config import DatasetConfig
from rowloom.engine.distributed import ray_executor
from rowloom.engine.distributed.ray_executor import DistributedRun, run_distributed
from rowloom.engine.job import run_job
from rowloom.engine.storage import WrittenRowGroup
from rowloom.errors import RowloomWarning

# Every test that starts Ray runs in one xdist worker (`--dist loadgroup`): one instance at a time on the machine.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("ray")]

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 200
SAMPLED = ["topic", "difficulty"]
KEY = "sim/sim-small"


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(SimulatorConfig(latency_s=0.05, capacity=16, models=("sim-small",))) as process:
        yield process


def _config(sim: SimulatorProcess) -> DatasetConfig:
    data = yaml.safe_load((ROOT / "examples" / "chain.yaml").read_text())
    data["providers"][0]["base_url"] = sim.base_url
    data["run"].update(row_group_size=10, seed=11)
    data["models"][0]["max_parallel_requests"] = 64  # a ceiling far above what the endpoint bears
    return DatasetConfig.from_dict(data)


@pytest.fixture(scope="module")
def single_process_output(sim, tmp_path_factory) -> Path:
    """The folder of a complete single-process run (copy it to start from a run of these rows)."""
    out = tmp_path_factory.mktemp("single")
    asyncio.run(run_job(_config(sim), RECORDS, output=out))
    return out


@pytest.fixture(scope="module")
def single_process(single_process_output):
    return pq.read_table(single_process_output / "data").to_pandas()


@dataclass
class ClusterRun:
    """One finished two-worker run of `_config(sim)` through `rowloom.generate`, observed every way a user can."""

    out: Path
    result: Any
    stats: dict[str, Any]  # the simulator's, of this run alone
    log: Path  # the merged JSONL event log
    metrics: Any  # the live PrometheusSink
    live_limit: list[tuple[int, float]]  # (a worker's own limit in an event, the exported gauge then)


@pytest.fixture(scope="module")
def cluster_run(ray_instance, sim, tmp_path_factory) -> ClusterRun:
    """Several tests assert different facts of the same run: it is made once (each run pays the workers' start)."""
    import rowloom
    from rowloom.observe.prometheus import PrometheusSink
    from rowloom.observe.sinks import FanoutSink, JsonlSink

    folder = tmp_path_factory.mktemp("cluster")
    log, out = folder / "events.jsonl", folder / "out"
    metrics = PrometheusSink()
    live_limit: list[tuple[int, float]] = []

    class Watch:  # reads the live gauge after every event that reports a worker's limit, as a scrape would
        def emit(self, event) -> None:
            own = {"limit_changed": "new", "request_queued": "limit", "request_admitted": "limit"}.get(event.kind)
            if own is not None:
                gauge = metrics.registry.get_sample_value("rowloom_request_limit", {"endpoint": KEY})
                live_limit.append((getattr(event, own), gauge))

        def close(self) -> None:
            return None

    sim.reset()
    sink = FanoutSink([JsonlSink(log), metrics, Watch()])
    result = rowloom.generate(_config(sim), RECORDS, out, executor="ray", workers=2, events=sink)
    return ClusterRun(out, result, sim.stats(), log, metrics, live_limit)


def _rows(out: Path):
    return pq.read_table(out / "data").to_pandas()


def _assert_same_rows(out: Path, expected) -> None:
    got = _rows(out)
    assert len(got) == len(expected) == RECORDS
    assert got[SAMPLED].equals(expected[SAMPLED])  # the sampled values: seed, column and row group decide them
    assert got.astype(str).equals(expected.astype(str))  # the simulator's replies follow from the prompts


def test_two_workers_stay_within_one_endpoint_capacity(cluster_run, single_process):
    result, stats, out = cluster_run.result, cluster_run.stats, cluster_run.out
    requests = stats["requests_total"]
    # + a small probe margin: grants can exceed a just-cut limit for one renewal interval, and on a loaded host the
    # simulator's in-flight count overlaps a reply still being written with the next request in service
    assert stats["peak_in_flight"] <= 16 + 4
    assert stats["by_status"].get("429", 0) <= 0.02 * requests
    authority = result.summary["executor"]["authorities"][KEY]
    assert authority["peak_granted"] <= 16 + 4  # what the two workers together were lent
    assert authority["samples"] == requests  # every worker's every attempt fed the one limit
    _assert_same_rows(out, single_process)
    # The token ledger is built from the workers' events on the driver, as a single process builds it.
    totals = result.summary["ledger"]["totals"]
    for name in ("prompt_tokens", "completion_tokens"):
        assert totals[name] == stats[name]
    assert totals["requests"] == requests
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ledger"]["totals"] == totals


def test_killed_worker_loses_and_duplicates_nothing(ray_instance, sim, single_process, tmp_path):
    killed: list[str] = []

    def kill_once(entry: WrittenRowGroup, run: DistributedRun) -> None:
        if not killed and len(run.workers) == 2:
            worker, handle = next(iter(run.workers.items()))
            ray.kill(handle, no_restart=True)
            killed.append(worker)

    result = run_distributed(_config(sim), RECORDS, output=tmp_path, workers=2, on_row_group=kill_once)
    assert killed and result.summary["executor"]["workers_lost"] == 1
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    indices = [g["index"] for g in manifest["row_groups"]]
    assert sorted(indices) == list(range(RECORDS // 10))  # every row group listed exactly once
    assert manifest["complete"] and manifest["records_written"] == RECORDS
    _assert_listed_parts_are_the_files(tmp_path)
    _assert_same_rows(tmp_path, single_process)


def _assert_listed_parts_are_the_files(out: Path) -> dict:
    """`data/` holds exactly the parts the manifest lists, each with the rows it says; returns the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {g["file"]: g["rows"] for g in manifest["row_groups"]}
    assert sorted(f"data/{p.name}" for p in (out / "data").iterdir()) == sorted(listed)
    assert {f: pq.read_metadata(out / f).num_rows for f in listed} == listed
    assert len({g["index"] for g in manifest["row_groups"]}) == len(listed)  # one part per row group
    return manifest


def _stalls_once(marker: str, stall_s: float):
    """A custom column whose third call, in the first worker process to get there, blocks that worker's event
    loop for `stall_s` (so it goes silent: no events, no sign of life), then returns as if nothing happened."""
    calls = [0]

    async def column(row: dict) -> int:
        import os
        import time

        calls[0] += 1
        if calls[0] == 3:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                time.sleep(stall_s)
        return row["n"]

    return column


def _samplers(function, records_per_group: int = 10) -> DatasetConfig:
    return DatasetConfig.from_dict(
        {
            "columns": [
                {"name": "n", "type": "uniform", "low": 0, "high": 1000, "integer": True},
                {"name": "x", "type": "custom", "function": function, "inputs": ["n"], "dtype": "int"},
            ],
            "run": {"row_group_size": records_per_group, "seed": 5},
        }
    )


def test_a_worker_silent_past_the_liveness_check_is_stopped_and_its_late_parts_are_not_kept(
    ray_instance, tmp_path, monkeypatch
):
    """The zombie of issue 21, item 3: a worker stalls past the liveness check, is dropped, and — its stop made
    ineffective, as for a worker Ray cannot reach — wakes and delivers its parts while the run goes on."""
    from rowloom.observe.sinks import MemorySink

    stall_s, liveness_s = 5.5, 3.0
    marker, out = tmp_path / "stalled", tmp_path / "out"
    config = _samplers(_stalls_once(str(marker), stall_s))
    seen: list[DistributedRun] = []
    zombie: dict[str, Any] = {}  # the dropped worker: its name, and whether it delivered
    kill = ray.kill

    def unreachable(handle) -> None:
        """The driver's `lose()` stops the worker: ineffective. It lives on until its chunks end (it wakes and
        delivers, while the driver waits for the rest), then stops for real, giving back the CPU its heir needs."""
        run = seen[0]
        chunks = [ref for ref, (worker, _) in run.outstanding.items() if worker not in run.workers]
        zombie["worker"] = run.outstanding[chunks[0]][0]

        def linger() -> None:
            done, _ = ray.wait(chunks, num_returns=len(chunks), timeout=stall_s + 10)
            zombie["delivered"] = len(done) == len(chunks)
            kill(handle, no_restart=True)

        zombie["thread"] = threading.Thread(target=linger, daemon=True)
        zombie["thread"].start()

    def stop(handle, no_restart: bool = False) -> None:
        if no_restart and seen and not zombie:  # the first worker the driver drops
            return unreachable(handle)
        return kill(handle, no_restart=no_restart)

    def recorded(**fields: Any) -> DistributedRun:
        """The driver's run state, seen from its start: a worker may be dropped before any row group is in."""
        seen.append(DistributedRun(**fields))
        return seen[-1]

    monkeypatch.setattr(ray, "kill", stop)
    monkeypatch.setattr(ray_executor, "DistributedRun", recorded)
    sink = MemorySink()
    with pytest.warns(RowloomWarning, match=r"sent nothing for 3 s while it had row groups to write: it was"):
        result = run_distributed(config, RECORDS, output=out, workers=2, liveness_s=liveness_s, sink=sink)
    monkeypatch.undo()
    zombie["thread"].join(timeout=10)
    assert marker.exists() and result.summary["executor"]["workers_lost"] >= 1
    assert zombie["delivered"], "the stalled worker was to wake and deliver while the run went on"
    late = {
        e.file for e in sink.events if e.kind == "row_group_checkpointed" and e.job.endswith(f":{zombie['worker']}")
    }
    assert late and result.summary["executor"]["parts_discarded"] >= len(late)  # it wrote and delivered parts
    manifest = _assert_listed_parts_are_the_files(out)  # …neither listed nor left in data/
    assert not late & {g["file"] for g in manifest["row_groups"]}
    assert manifest["complete"] and sorted(g["index"] for g in manifest["row_groups"]) == list(range(20))
    assert manifest["records_written"] == RECORDS == len(_rows(out))


def test_events_trace_report_and_metrics_show_the_whole_cluster(cluster_run):
    from rowloom.observe.event_log import select_job
    from rowloom.observe.perfetto import build_trace
    from rowloom.observe.report import render_report
    from rowloom.observe.sinks import read_jsonl
    from rowloom.observe.timeline_builder import build_timeline

    log, metrics, live_limit = cluster_run.log, cluster_run.metrics, cluster_run.live_limit
    requests = cluster_run.stats["requests_total"]
    events = read_jsonl(log)
    # Every worker's events merge into the one log, each carrying its worker's id, between the driver's own.
    assert {e["job"].rpartition(":")[2] for e in events if e["kind"] == "request_completed"} == {"w0", "w1"}
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "job_started" and kinds[-1] == "job_completed"
    assert kinds.count("row_group_checkpointed") == RECORDS // 10

    timeline = build_timeline(select_job(events))
    endpoint = timeline.endpoints[KEY]
    assert endpoint.requests == requests
    # The endpoint's limit is the sum of the workers' grants, so what both have in flight stays within it (but
    # for the moments after a cut, while requests admitted before it finish); one worker's grant would not.
    _, flying = endpoint.in_flight.resample(0.0, timeline.end, 100)
    _, limit = endpoint.limit.resample(0.0, timeline.end, 100)
    assert sum(f > cap + 0.5 for f, cap in zip(flying, limit, strict=True)) <= 15
    # Against the summed limit's own peak (17 in a run alone), not the endpoint's capacity of 16: how far the one
    # adaptive limit climbs before it cuts depends on the host's timing (the run in flight peaked at 23 once in a
    # loaded suite, beyond the bound of 16 + 4 this was), the split between the workers does not.
    assert endpoint.in_flight.peak <= endpoint.limit.peak + 4

    trace = build_trace(events)["traceEvents"]
    slices = [t for t in trace if t["ph"] == "X" and t.get("cat") == "request"]
    assert len(slices) == requests and not [t for t in slices if t["args"].get("unfinished")]  # paired per worker
    # The trace's counter is that same summed limit; the live metric sums the workers' parts too.
    counted = {t["ts"] / 1e6: t["args"]["value"] for t in trace if t["ph"] == "C" and t["name"] == "adaptive limit"}
    assert all(value == endpoint.limit.at(t + 1e-6) for t, value in counted.items())  # ns-rounded times
    assert all(gauge >= own for own, gauge in live_limit)
    assert any(gauge > own for own, gauge in live_limit)  # while both workers hold grants: their sum
    assert render_report(cluster_run.out, events=log).is_file()
    assert metrics.registry.get_sample_value("rowloom_requests_in_flight", {"endpoint": KEY}) == 0
    assert (
        metrics.registry.get_sample_value("rowloom_requests_total", {"endpoint": KEY, "outcome": "success"})
        == (cluster_run.stats["by_status"]["200"])
    )


def test_resume_after_a_partial_run_writes_only_the_rest(
    ray_instance, sim, single_process, single_process_output, tmp_path
):
    import shutil

    config = _config(sim)
    shutil.copytree(single_process_output, tmp_path, dirs_exist_ok=True)  # the run of `config`, made once
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["row_groups"] = manifest["row_groups"][:12]  # as if the driver died after 12 row groups
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    result = run_distributed(config, RECORDS, output=tmp_path, workers=2)
    assert result.summary["records_resumed"] == 120 and result.summary["records_written_this_run"] == 80
    _assert_same_rows(tmp_path, single_process)


def test_a_shorter_run_is_extended_on_ray_to_the_rows_of_a_single_process(ray_instance, sim, single_process, tmp_path):
    config = _config(sim)
    asyncio.run(run_job(config, 95, output=tmp_path))  # ends inside a row group: the extension completes it
    result = run_distributed(config, RECORDS, output=tmp_path, workers=2)
    assert result.summary["records_resumed"] == 95 and result.summary["records_written_this_run"] == 105
    assert json.loads((tmp_path / "manifest.json").read_text())["extended_from"] == [95]
    _assert_same_rows(tmp_path, single_process)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = run_distributed(config, RECORDS, output=tmp_path, workers=2)  # complete: nothing to do, Ray not used
    assert not again.generated and "nothing to do" in again.message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files


def _start_ray_driver(sim, tmp_path: Path, **popen: Any):
    """`rowloom run … --executor ray --workers 2` of `_config(sim)` in its own session; (process, output folder)."""
    import subprocess
    import sys

    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(_config(sim).to_dict(), sort_keys=False))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rowloom.interface", "run", str(config), "-n", str(RECORDS), "-o", str(out)]
    driver = subprocess.Popen([*command, "--executor", "ray", "--workers", "2", "-q"], start_new_session=True, **popen)
    return driver, out


def _wait_until_listed(manifest: Path, driver, row_groups: int, timeout_s: float = 90) -> None:
    """Until the manifest lists `row_groups` row groups, the driver ends, or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        if manifest.is_file() and len(json.loads(manifest.read_text())["row_groups"]) >= row_groups:
            return
        time.sleep(0.02)


def test_a_killed_driver_leaves_a_run_that_resumes_on_ray(ray_instance, sim, single_process, tmp_path):
    import os
    import signal
    import subprocess

    # In its own session: its own Ray instance goes down with it, as with a crashed driver machine.
    driver, out = _start_ray_driver(sim, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    _wait_until_listed(manifest, driver, 4)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    listed = len(json.loads(manifest.read_text())["row_groups"])
    assert 4 <= listed < RECORDS // 10, "the driver must die mid-run"

    with pytest.warns(RowloomWarning, match=r"took over .*rowloom\.lock of a run that ended without releasing it"):
        result = run_distributed(_config(sim), RECORDS, output=out, workers=2)  # the SIGKILLed driver's lock
    assert result.summary["records_resumed"] == listed * 10
    final = json.loads(manifest.read_text())
    assert sorted(g["index"] for g in final["row_groups"]) == list(range(RECORDS // 10)) and final["complete"]
    assert not list(out.rglob(".tmp-*"))  # a part cut off mid-write was cleared on resume
    _assert_same_rows(out, single_process)


def test_sigterm_stops_a_ray_run_keeping_every_delivered_part(sim, tmp_path):
    import os
    import signal
    import subprocess

    driver, out = _start_ray_driver(sim, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_listed(out / "manifest.json", driver, 4)
        driver.send_signal(signal.SIGTERM)  # as a scheduler or `kill` stops it: to the driver alone
        _, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, stderr  # interrupted, as Ctrl-C: not Ray's own SIGTERM exit
    assert "interrupted" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    listed = _assert_listed_parts_are_the_files(out)["row_groups"]
    assert summary["status"] == "interrupted" and 4 <= len(listed) < RECORDS // 10
    assert summary["records_written"] == sum(g["rows"] for g in listed)


def _fails_at(marker: str, call: int):
    """A custom column with a bug that shows at its `call`-th call, in the first worker process to get there."""
    calls = [0]

    def column(row: dict) -> int:
        import os

        calls[0] += 1
        if calls[0] == call:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                return row["missing"]
        return row["n"]

    return column


def test_a_failed_ray_run_lists_every_part_its_workers_delivered(ray_instance, tmp_path):
    from rowloom.errors import UserCodeError

    out = tmp_path / "out"
    with pytest.raises(UserCodeError, match="missing"):
        run_distributed(_samplers(_fails_at(str(tmp_path / "failed"), 60), 5), RECORDS, output=out, workers=2)
    manifest = _assert_listed_parts_are_the_files(out)  # nothing delivered goes unlisted, nothing unlisted stays
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and not manifest["complete"]
    assert summary["records_written"] == manifest["records_written"] == 5 * len(manifest["row_groups"]) > 0


def test_generate_with_executor_ray_writes_the_same_rows(cluster_run, single_process):
    assert cluster_run.result.summary["executor"]["kind"] == "ray"  # the shared run is made by rowloom.generate
    _assert_same_rows(cluster_run.out, single_process)


def test_workers_write_to_an_object_store_and_the_driver_owns_its_manifest(
    ray_instance, sim, single_process, object_store
):
    from pyarrow import fs

    uri = object_store.uri("ray-run")
    result = run_distributed(_config(sim), RECORDS, output=uri, workers=2)
    assert result.summary["executor"]["workers"] == 2
    assert result.to_pandas().astype(str).equals(single_process.astype(str))
    store = object_store.filesystem()
    with store.open_input_stream("rowloom/ray-run/manifest.json") as fh:
        manifest = json.loads(fh.read())
    assert manifest["complete"] and sorted(g["index"] for g in manifest["row_groups"]) == list(range(RECORDS // 10))
    parts = store.get_file_info(fs.FileSelector("rowloom/ray-run/data"))
    assert len(parts) == RECORDS // 10


def test_drop_reasons_and_progress_reach_the_driver(ray_instance, sim, tmp_path):
    from rowloom.engine.progress import RunProgress

    data = _config(sim).to_dict()
    data["run"]["max_error_rate"] = 1.0
    data["columns"] += [  # rows of difficulty 3 hold no JSON, and the validator drops them
        {"name": "doc", "type": "expression", "expr": "'not json' if difficulty == 3 else '{}'"},
        {"name": "doc_ok", "type": "validation", "language": "json", "target": "doc", "drop_invalid": True},
    ]
    progress = RunProgress()
    result = run_distributed(DatasetConfig.from_dict(data), 100, output=tmp_path, workers=2, progress=progress)
    written = pq.read_table(tmp_path / "data").to_pandas()
    dropped = 100 - len(written)
    assert dropped > 0 and (written["difficulty"] != 3).all()
    assert result.summary["rows_dropped_by_reason"] == {"doc_ok:invalid": dropped} == dict(progress.dropped_by_reason)
    assert progress.records_written == result.summary["records_written"] == len(written)


def test_cli_runs_on_ray_with_a_progress_line(ray_instance, sim, tmp_path):
    import os
    import subprocess
    import sys

    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(_config(sim).to_dict(), sort_keys=False))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rowloom.interface", "run", str(config), "-n", "40", "-o", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # a user's shell (Ray sets it in ours)
    result = subprocess.run(
        [*command, "--executor", "ray", "--workers", "2"], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "40/40 records" in result.stderr  # the last progress line, fed by the parts workers delivered
    assert "Token authentication" not in result.stderr and "WARNING" not in result.stderr  # Ray's, every run
    assert f"wrote 40 records to {out}" in " ".join(result.stdout.split())


def _listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port` (from /proc/net, hex-encoded)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads listening sockets from Linux's /proc/net")
def test_a_local_instance_binds_its_control_plane_to_loopback(ray_instance):
    # Ray's control plane is unauthenticated unless a cluster enables token auth: a local instance must not be
    # reachable from the network (Ray otherwise resolves 127.0.0.1 to the machine's routable address).
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
    assert host == "127.0.0.1"
    assert _listening(int(port)) and _listening(int(port)) <= LOOPBACK  # not 0.0.0.0, not the routable address
    # Every socket the instance listens on, whichever process: GCS, raylet (node and object manager), the
    # dashboard and runtime-env agents, workers, and this driver's own core worker.
    listening = _ray_listeners()
    assert {"gcs_server", "raylet"} <= {kind for kind, _ in listening}, listening
    assert all(_is_loopback(address) for _, address in listening), listening


def _ray_listeners() -> set[tuple[str, str]]:
    """(process, address) of each TCP socket listening in this process or a Ray process it started."""
    import psutil

    me = psutil.Process()
    processes = {me.pid: "driver"}
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline()) or child.name()
            if "ray" in command:  # not the simulator or other servers tests started
                processes[child.pid] = Path(command.split()[0]).name
    return {
        (processes[c.pid], c.laddr.ip)
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in processes
    }


def _is_loopback(address: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(address.partition("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, a dual-stack socket bound to 127.0.0.1
    return (mapped or ip).is_loopback


def test_unknown_executor_is_refused(tmp_path):
    import rowloom
    from rowloom.errors import RowloomError

    with pytest.raises(RowloomError, match="executor must be"):
        rowloom.generate("examples/chain.yaml", 1, tmp_path, executor="dask")  # type: ignore[arg-type]


def test_two_workers_share_one_reply_cache_folder(ray_instance, sim, tmp_path):
    import sqlite3
    import zlib

    from rowloom.models.cache.store import FILE_NAME
    from rowloom.observe.sinks import MemorySink

    cache = tmp_path / "cache"
    config = _config(sim)
    config.run.cache.mode, config.run.cache.path = "readwrite", str(cache)  # travels to the workers with the config
    sink = MemorySink()
    sim.reset()
    result = run_distributed(config, 40, output=tmp_path / "out", workers=2, sink=sink)
    sent = sim.stats()["by_status"]["200"]  # replies (a 429 while the limit is found is retried, not a reply)
    assert len({e.job for e in sink.events if e.kind == "cache_miss"}) == 2  # both workers used the cache
    assert result.summary["cache"]["misses"] == sent == 3 * 40
    with sqlite3.connect(cache / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT key, payload, checksum FROM replies").fetchall()
    assert len(rows) == sent and all(zlib.crc32(p, zlib.crc32(k)) == c for k, p, c in rows)
