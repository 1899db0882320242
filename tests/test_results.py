import json

import pytest

from bench.controller.results import RunStore, StoreError, load_run, write_json_atomic


def sample(i):
    return {
        "run_id": "r",
        "node": "n",
        "stack": "containerd",
        "handler": "runc",
        "level": "cri",
        "op": "StartContainer",
        "iteration": i,
        "concurrency": 1,
        "worker": 0,
        "warmup": False,
        "start_ns": i,
        "duration_ns": 1000 + i,
        "ok": True,
        "error": "",
    }


def test_samples_survive_a_crash_before_the_parquet_is_written(tmp_path, capsys):
    store = RunStore(tmp_path, "r")
    store.update_meta(node="n")
    store.write_parquet()  # an early checkpoint with no samples
    for i in range(5):
        store.add_sample(sample(i))
    # The process dies here: no close(). A torn half line ends the journal.
    with open(store.dir / "samples.jsonl", "a") as fh:
        fh.write('{"run_id": "r", "op": "Sta')
    meta, frame = load_run(store.dir)
    for fh in store._files.values():  # what the dying process's exit would do
        fh.close()
    assert meta["status"] == "running"
    assert list(frame["iteration"]) == [0, 1, 2, 3, 4]
    assert frame["duration_ns"].dtype == "int64"
    warned = capsys.readouterr().err
    assert "samples.jsonl: line 6 is torn" in warned and "the 5 rows before it kept" in warned


def test_meta_is_rewritten_whole(tmp_path):
    store = RunStore(tmp_path, "r")
    store.update_meta(a=1)
    store.update_meta(b=2)
    meta = json.loads((store.dir / "meta.json").read_text())
    assert meta["a"] == 1 and meta["b"] == 2 and meta["schema_version"] == 1


def test_a_folder_that_stops_taking_writes_breaks_the_store_and_keeps_what_was_written(tmp_path):
    store = RunStore(tmp_path, "r")
    store.update_meta(node="n")
    for i in range(3):
        store.add_sample(sample(i))
    store._files["samples.jsonl"].close()
    store._files["samples.jsonl"] = open("/dev/full", "a")  # noqa: SIM115 - the kernel's ENOSPC on every flush
    with pytest.raises(StoreError, match=f"results folder {store.dir}: cannot write \\(No space left on device\\)"):
        store.add_sample(sample(3))
    assert store.broken
    with pytest.raises(StoreError):
        store.add_event({"event": "warning"})  # refused at once: no line lands after a gap
    store.close()  # no error, no parquet from a broken store
    meta, frame = load_run(store.dir)
    assert list(frame["iteration"]) == [0, 1, 2]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "m.json").write_text('{"a": 1}')
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "m.json", {1j: object()})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
