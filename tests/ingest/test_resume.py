"""Crash safety: a run killed at any moment, then re-run, leaves exactly the dataset
of an uninterrupted run, and readers never see a half state.

Two kinds of kill: deterministic crashes injected at each phase boundary (in
process), and real `kill -9` of the whole process tree at random moments.
"""

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench import __version__
from rainbench.capture.probe import Probe
from rainbench.capture.reject import Reason
from rainbench.capture.source import SourceFile
from rainbench.cli import main
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest import run as run_module
from rainbench.ingest import scan as scan_module
from rainbench.ingest import write as write_module
from rainbench.shards import manifest
from rainbench.shards import tar as tar_module
from rainbench.shards.dataset import Dataset, DatasetError
from rainbench.shards.verify import verify
from rainbench.versions import CAPTURE_LIBRARIES, installed_versions

OPTIONS = IngestOptions(workers=1, shard_bytes=150_000)
INSTALLED = {"rainbench": __version__, **installed_versions(CAPTURE_LIBRARIES)}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the crash point runs, no handler catches it."""


def fingerprint(ds) -> dict:
    """Everything that must match an uninterrupted run (run ids and times aside)."""
    samples = pd.read_parquet(ds / "manifests/samples.parquet").drop(columns="ingest_run")
    shards = pd.read_parquet(ds / "manifests/shards.parquet").drop(columns="ingest_run")
    rejects = pd.read_parquet(ds / "manifests/rejects.parquet")
    files = sorted(p.relative_to(ds).as_posix() for p in (ds / "shards").rglob("*") if p.is_file())
    for column in ("members", "tag_caveats"):
        samples[column] = samples[column].map(tuple, na_action="ignore")  # null: untagged
    samples = samples.astype(object).where(samples.notna(), None)  # NaN != NaN
    return {
        "samples": samples.sort_values("key").to_dict("records"),
        "shards": shards.to_dict("records"),
        "rejects": rejects[["source_path", "reason"]].to_dict("records"),
        "files": {f: hashlib.sha256((ds / f).read_bytes()).hexdigest() for f in files},
    }


@pytest.fixture
def raw(capture_folder, bad_folder):
    shutil.move(bad_folder[0], capture_folder / "bad")
    return capture_folder


@pytest.fixture
def reference(tmp_path, raw) -> dict:
    ingest([raw], tmp_path / "reference", OPTIONS)
    return fingerprint(tmp_path / "reference")


def _always(*args, **kwargs):
    return True


def _crash_on_call(monkeypatch, target, name, nth, when=_always, error=None):
    original = getattr(target, name)
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        if when(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                raise error() if error else Killed(f"{name} #{nth}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, crashing)


def _killed(monkeypatch, inputs, ds, options=OPTIONS, at=None, nth=2, when=_always):
    """An ingest of `inputs` into `ds` killed at the `nth` call of `at` (module or class,
    and the name of what it calls; default: write_unit, once a shard is written)."""
    target, name = at or (run_module, "write_unit")
    with monkeypatch.context() as patch:
        _crash_on_call(patch, target, name, nth, when)
        with pytest.raises(Killed):
            ingest(inputs, ds, options)


def _named(filename):
    return lambda path, *args, **kwargs: path.name == filename


# Where to crash: (object, function, which of the counted calls, which calls count).
CRASH_POINTS = {
    "scan, after two journal appends": (scan_module.Journal, "append", 3, _always),
    "plan, rejects saved but no plan": (manifest, "write_manifest", 1, _named("plan.parquet")),
    "write, during the third shard": (run_module, "write_unit", 3, _always),
    "commit, shards listed but rows not": (
        manifest,
        "write_manifest",
        1,
        _named("samples.parquet"),
    ),
    "finalize, rejects written, dataset.json not": (run_module.Dataset, "write_info", 2, _always),
    "finalize, cleaning up": (shutil, "rmtree", 1, _always),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_crash_at_each_phase_then_resume_equals_uninterrupted(
    tmp_path, raw, reference, monkeypatch, point
):
    target, name, nth, when = CRASH_POINTS[point]
    ds = tmp_path / "ds"
    _killed(monkeypatch, [raw], ds, at=(target, name), nth=nth, when=when)
    # Whatever state the crash left, a reader never sees a partial shard or a
    # manifest row whose shard is missing.
    problems = verify(Dataset(ds)) if Dataset(ds).exists() else []
    assert not [
        p
        for p in problems
        if p.kind in ("shard-missing", "member-missing", "shard-sha256", "shard-unlisted")
    ]
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference
    assert verify(Dataset(ds)) == []
    assert not (ds / ".ingest").exists()


@pytest.mark.parametrize("command", ["stats", "tag"])  # verify lists it as a problem
def test_readers_of_a_first_ingest_killed_before_its_commit_say_to_run_it_again(
    tmp_path, raw, monkeypatch, command
):
    ds = tmp_path / "ds"
    _killed(monkeypatch, [raw], ds, nth=3)
    assert not (ds / "dataset.json").exists()
    result = CliRunner().invoke(main, [command, str(ds)])
    assert result.exit_code == 1 and result.output == (
        f"error: {ds} is not a dataset yet: an ingest into it was interrupted before its "
        "first commit; run the same ingest again to finish it\n"
    )
    if command == "stats":  # verify lists it as its one problem
        verified = CliRunner().invoke(main, ["verify", str(ds)])
        assert verified.exit_code == 1 and verified.output.endswith(f"{ds}: 1 problem\n")


def test_tag_is_refused_until_an_interrupted_ingest_is_finished(
    tmp_path, raw, reference, monkeypatch
):
    # The killed run's captures not committed yet keep the tags of the tagger active
    # when it planned them: a `tag --fit` in between would leave them tagged by another
    # tagger than the dataset's, and a sheet could not name them.
    ds = tmp_path / "ds"
    monkeypatch.setattr(run_module, "_COMMIT_SECONDS", 0)  # each finished shard committed
    _killed(monkeypatch, [raw], ds, nth=3)
    samples = (ds / "manifests/samples.parquet").read_bytes()  # two shards' captures
    result = CliRunner().invoke(main, ["tag", str(ds), "--tagger", "shipped"])
    assert result.exit_code == 1 and result.output == (
        f"error: {ds}: an ingest into it was interrupted; run the same ingest again to "
        "finish it, then tag\n"
    )
    assert (ds / "manifests/samples.parquet").read_bytes() == samples
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference
    assert CliRunner().invoke(main, ["tag", str(ds)]).exit_code == 0


def test_a_resumed_run_counts_each_rejected_file_once(tmp_path, raw, monkeypatch):
    fresh = ingest([raw], tmp_path / "fresh", OPTIONS)
    ds = tmp_path / "ds"
    _killed(monkeypatch, [raw], ds, nth=3)
    # The resumed run finishes the killed one's rejects; the run after it reads the
    # files that may read later (a dangling link) again, and rejects them again.
    resumed = ingest([raw], ds, OPTIONS)
    assert resumed.resumed
    assert resumed.rejected == fresh.rejected and resumed.duplicates == fresh.duplicates
    listed = pd.read_parquet(ds / "manifests/rejects.parquet")
    assert sum(resumed.rejected.values()) + resumed.duplicates == len(listed)


def test_a_run_resumed_from_its_scan_counts_each_ignored_file_once(tmp_path, raw, monkeypatch):
    (raw / "notes.txt").write_text("rain gauge 2.4 mm")
    (raw / "IMG_0001.xmp").write_text("<x:xmpmeta/>")
    fresh = ingest([raw], tmp_path / "fresh", OPTIONS)
    assert fresh.ignored == 2
    ds = tmp_path / "ds"
    _killed(monkeypatch, [raw], ds, at=(scan_module.Journal, "append"), nth=2)
    # The resumed run walks the inputs to finish its scan, and the run after it walks
    # them again: the same two files, ignored once.
    resumed = ingest([raw], ds, OPTIONS)
    assert resumed.resumed and resumed.ignored == 2


def test_crashing_twice_in_a_row_still_converges(tmp_path, raw, reference, monkeypatch):
    ds = tmp_path / "ds"
    for nth in (2, 4):
        _killed(monkeypatch, [raw], ds, nth=nth)
    summary = ingest([raw], ds, OPTIONS)
    assert summary.resumed
    assert fingerprint(ds) == reference


def test_a_killed_untagged_run_is_finished_untagged(tmp_path, capture_folder, monkeypatch):
    ds = tmp_path / "ds"
    _killed(monkeypatch, [capture_folder], ds, replace(OPTIONS, tag=False), nth=2)

    # The interrupted run's settings stand, --no-tag among them; this run's own
    # (tagging) apply to files it has to read, and there are none left.
    summary = ingest([capture_folder], ds, OPTIONS)

    assert summary.resumed
    assert summary.untagged == len(fingerprint(ds)["samples"]) > 0
    runs = json.loads((ds / "dataset.json").read_text())["runs"]
    assert [run["tag"] for run in runs] == [False]


def test_a_run_started_before_versions_were_recorded_is_finished(
    tmp_path, capture_folder, monkeypatch
):
    ds = tmp_path / "ds"
    _killed(monkeypatch, [capture_folder], ds, nth=2)
    pending = ds / ".ingest" / "run.json"
    settings = json.loads(pending.read_text())
    assert settings["versions"] == INSTALLED
    del settings["versions"]  # as an older rainbench wrote it
    pending.write_text(json.dumps(settings))

    assert ingest([capture_folder], ds, OPTIONS).resumed

    [entry] = json.loads((ds / "dataset.json").read_text())["runs"]
    assert entry["versions"] is None  # unknown, not this run's


def test_a_run_resumed_after_an_upgrade_names_both_starts_versions(
    tmp_path, raw, reference, monkeypatch, upgrade
):
    ds = tmp_path / "ds"
    _killed(monkeypatch, [raw], ds, nth=2)
    upgrade("99.0")

    assert ingest([raw], ds, OPTIONS).resumed

    # The run the kill interrupted, then one that reads the bad files again.
    resumed, new = json.loads((ds / "dataset.json").read_text())["runs"]
    assert resumed["versions"] == INSTALLED
    assert resumed["other_versions"] == [{**INSTALLED, "numpy": "99.0"}]
    assert (new["versions"], new["other_versions"]) == ({**INSTALLED, "numpy": "99.0"}, [])
    assert fingerprint(ds) == reference  # the same shards, byte for byte


def test_a_run_an_older_rainbench_started_keeps_the_versions_it_recorded(
    tmp_path, capture_folder, monkeypatch, upgrade
):
    ds = tmp_path / "ds"
    _killed(monkeypatch, [capture_folder], ds, nth=2)
    pending = ds / ".ingest" / "run.json"
    settings = json.loads(pending.read_text())
    older = installed_versions(CAPTURE_LIBRARIES)  # its start's, without rainbench's
    del settings["other_versions"]
    pending.write_text(json.dumps({**settings, "versions": older}))

    # Resumed by the same rainbench and libraries: nothing other.
    _killed(monkeypatch, [capture_folder], ds, nth=1)
    assert json.loads(pending.read_text()).get("other_versions", []) == []
    upgrade("99.0")

    assert ingest([capture_folder], ds, OPTIONS).resumed

    [entry] = json.loads((ds / "dataset.json").read_text())["runs"]
    assert entry["versions"] == older
    assert entry["other_versions"] == [{**INSTALLED, "numpy": "99.0"}]


def test_kill_minus_nine_at_random_moments(tmp_path, raw, reference):
    """The real thing: SIGKILL to the ingest and its worker processes, then resume."""
    command = [
        sys.executable,
        "-m",
        "rainbench",
        "ingest",
        str(raw),
        "--out",
        "DS",
        "--shard-size",
        "150KB",
        "-j",
        "2",
        "--no-progress",
    ]
    started = time.monotonic()
    subprocess.run(
        [*command[:6], str(tmp_path / "timed"), *command[7:]], check=True, capture_output=True
    )
    duration = time.monotonic() - started
    rng = random.Random(20261121)
    for trial in range(3):
        ds = tmp_path / f"killed-{trial}"
        argv = [*command[:6], str(ds), *command[7:]]
        for _ in range(2):  # killed, resumed and killed again, then finished
            process = subprocess.Popen(
                argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.2, duration))
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(argv, check=True, capture_output=True)
        assert fingerprint(ds) == reference, f"trial {trial}"
        assert verify(Dataset(ds)) == []


def _ingest_with_workers_up(raw, ds, session_processes, stderr) -> subprocess.Popen:
    """`rainbench ingest RAW --out DS -j 2` in a session of its own, once its forkserver
    and a worker have started."""
    command = [sys.executable, "-m", "rainbench", "ingest", str(raw), "--out", str(ds)]
    command += ["--shard-size", "150KB", "-j", "2", "--no-progress"]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr
    )
    deadline = time.monotonic() + 60
    while len(session_processes(process.pid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is not None:
        pytest.fail("the ingest finished before its workers could be seen")
    return process


def test_killing_only_the_main_process_takes_its_workers_with_it(
    tmp_path, raw, reference, session_processes
):
    ds = tmp_path / "ds"
    process = _ingest_with_workers_up(raw, ds, session_processes, subprocess.DEVNULL)
    process.kill()  # the main process alone
    process.wait()
    deadline = time.monotonic() + 10
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_processes(process.pid)
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# Where the disk fills: (object, function, which of the counted calls, which calls count).
DISK_FULL_POINTS = {
    "scan, appending to the journal": (scan_module.Journal, "append", 2, _always),
    # Three writes per tar member: this is inside the first shard's sixth capture or so.
    "write, inside a shard": (tar_module.ShardWriter, "_write", 40, _always),
    "write, flushing a finished shard": (run_module, "publish", 2, _always),
    "commit, a manifest": (manifest, "write_manifest", 1, _named("samples.parquet")),
    "finalize, dataset.json": (run_module.Dataset, "write_info", 2, _always),
}


@pytest.mark.parametrize("point", list(DISK_FULL_POINTS))
def test_a_full_disk_is_a_one_line_error_and_the_next_run_resumes(
    tmp_path, raw, reference, monkeypatch, point
):
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _crash_on_call(patch, *DISK_FULL_POINTS[point], error=_disk_full)
        with pytest.raises(DatasetError) as full:
            ingest([raw], ds, OPTIONS)
    assert "No space left on device" in str(full.value) and "\n" not in str(full.value)
    assert not [p for p in ds.rglob("*.tmp")]
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference
    assert verify(Dataset(ds)) == []


def test_the_cli_says_the_disk_is_full_in_one_line(tmp_path, raw, monkeypatch):
    _crash_on_call(monkeypatch, tar_module.ShardWriter, "_write", 1, error=_disk_full)
    ds = tmp_path / "ds"
    result = CliRunner().invoke(
        main, ["ingest", str(raw), "--out", str(ds), "-j", "1", "--no-progress"]
    )
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: {ds}: No space left on device; free some space and run the same ingest "
        "again to resume"
    ]


def test_a_shard_written_by_a_killed_runs_leftover_task_is_swept(
    tmp_path, raw, reference, monkeypatch
):
    """A Ray task of a killed driver may still write a shard while the next run goes:
    under a temporary name of its own, which the run removes once its shards are out."""
    ds = tmp_path / "ds"
    written = run_module.write_unit

    def with_a_stale_writer(task):
        result = written(task)
        stale = tar_module.ShardWriter(ds / task.shard)
        stale.add("x.jpg", b"a killed run's")
        stale.finish()
        return result

    monkeypatch.setattr(run_module, "write_unit", with_a_stale_writer)
    ingest([raw], ds, OPTIONS)
    assert not [p for p in ds.rglob("*.tmp")]
    assert fingerprint(ds) == reference
    assert verify(Dataset(ds)) == []


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("{", "not JSON"),
        ("[]", "not the settings of an ingest"),
        ('{"run_id": "x"}', "not the settings of an ingest"),
        ('{"pad": "' + "x" * (32 << 20) + '"}', "larger than 32 MiB"),  # read no further
    ],
    ids=["torn", "a-list", "too-few", "too-large"],
)
def test_a_damaged_record_of_the_interrupted_run_is_one_line(tmp_path, raw, damage, why):
    ds = tmp_path / "ds"
    ingest([raw], ds, OPTIONS)
    (ds / ".ingest").mkdir()
    (ds / ".ingest" / "run.json").write_text(damage)
    said = rf"cannot resume the interrupted ingest \({why}"
    with pytest.raises(DatasetError, match=said) as refused:
        ingest([raw], ds, OPTIONS)
    assert "\n" not in str(refused.value) and "to start it afresh" in str(refused.value)


def test_a_decoders_message_of_any_length_makes_a_journal_line_within_the_bound():
    # A decoder may quote a hostile file's fields (a TIFF tag's thousands of values).
    source = SourceFile("/raw", "a.tif", 10, 0)
    record = scan_module.to_record(Probe(source, Reason.CORRUPT, "(1, " * (1 << 20)))
    assert record["message"] == ("(1, " * (1 << 20))[: 64 << 10] + "…"
    assert len(json.dumps(record, ensure_ascii=False).encode()) < 1 << 20


def _killed_after_two_journal_appends(tmp_path, raw) -> Path:
    """A dataset whose ingest was killed with two probes in its scan journal."""
    ds = tmp_path / "ds"
    with pytest.MonkeyPatch.context() as patch:
        _crash_on_call(patch, *CRASH_POINTS["scan, after two journal appends"])
        with pytest.raises(Killed):
            ingest([raw], ds, OPTIONS)
    return ds


@pytest.mark.parametrize("damage", ['{"pad": 1}', "[]", '{"exif": 1}', "{"])
def test_a_journal_line_that_is_no_record_is_cut_off_and_probed_again(
    tmp_path, raw, reference, damage
):
    ds = _killed_after_two_journal_appends(tmp_path, raw)
    with (ds / ".ingest" / "scan.jsonl").open("a") as journal:
        journal.write(damage + "\n")
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference


def test_a_journal_line_longer_than_any_record_is_one_line_read_no_further(tmp_path, raw):
    ds = _killed_after_two_journal_appends(tmp_path, raw)
    with (ds / ".ingest" / "scan.jsonl").open("a") as journal:
        journal.write('{"pad": "' + "x" * (1 << 20) + '"}\n')
    with pytest.raises(DatasetError, match=r"scan\.jsonl: a line of more than 1 MiB") as refused:
        ingest([raw], ds, OPTIONS)
    assert "\n" not in str(refused.value) and "to scan afresh" in str(refused.value)


@pytest.mark.parametrize("damage", ["[]", '{"shard": "x"}'])
def test_a_done_marker_that_is_no_marker_has_its_shard_written_again(
    tmp_path, raw, reference, monkeypatch, damage
):
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _crash_on_call(patch, *CRASH_POINTS["write, during the third shard"])
        with pytest.raises(Killed):
            ingest([raw], ds, OPTIONS)
    min((ds / ".ingest" / "done").iterdir()).write_text(damage)
    ingest([raw], ds, OPTIONS)
    assert fingerprint(ds) == reference
    assert verify(Dataset(ds)) == []


def test_a_done_marker_larger_than_any_is_none_read_no_further(tmp_path):
    result = write_module.UnitResult("shards/train/000000.tar", "a" * 64, 10, 1)
    write_module.write_marker(tmp_path, result)
    (path,) = tmp_path.iterdir()
    assert write_module.read_marker(path) == result
    with path.open("a") as marker:  # still the same JSON, past the bound
        marker.write(" " * (64 << 20))
    assert write_module.read_marker(path) is None


def test_a_plan_whose_files_seen_again_do_not_read_is_one_line(tmp_path, raw, monkeypatch):
    ds = tmp_path / "ds"
    with monkeypatch.context() as patch:
        _crash_on_call(patch, *CRASH_POINTS["write, during the third shard"])
        with pytest.raises(Killed):
            ingest([raw], ds, OPTIONS)
    plan = ds / ".ingest" / "plan.parquet"
    table = pq.read_table(plan)
    pq.write_table(table.replace_schema_metadata({"seen_again": "[" * 100_000}), plan)
    with pytest.raises(DatasetError, match=r"plan\.parquet: not a plan an ingest wrote") as refused:
        ingest([raw], ds, OPTIONS)
    assert "\n" not in str(refused.value) and "to plan afresh" in str(refused.value)


def test_sigterm_ends_the_ingest_quietly_and_it_resumes(
    tmp_path, raw, reference, session_processes
):
    """`kill PID` mid-run: the ingest dies by the signal without a word (no resource
    tracker's warning of leaked semaphores), and the next run finishes the same."""
    ds = tmp_path / "ds"
    process = _ingest_with_workers_up(raw, ds, session_processes, subprocess.PIPE)
    try:
        process.terminate()  # the main process alone, as `kill PID`
        _, stderr = process.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # the resource tracker speaks, if at all, as it exits
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGTERM
    assert stderr == b""
    assert not session_processes(process.pid)
    assert ingest([raw], ds, OPTIONS).resumed
    assert fingerprint(ds) == reference
