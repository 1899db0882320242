"""The in-situ split: trace lines, runtime argument parsing, attribution to ops, the cut into parts."""

import time

import pytest

from bench.node.split import (
    PARTS,
    Call,
    OpWindow,
    TraceFormatError,
    TraceReader,
    attribute,
    oci_command,
    parse_line,
    parts,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [
                "--root",
                "/run/r",
                "--log",
                "/x/log.json",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/init.pid",
                "abc",
            ],
            ("create", "abc"),
        ),
        (["--root=/run/r", "start", "abc"], ("start", "abc")),
        (["--root", "/r", "kill", "--all", "abc", "15"], ("kill", "abc")),
        (["delete", "--force", "abc"], ("delete", "abc")),
        (["--version"], ("", "")),
        (["state"], ("state", "")),
        (["--systemd-cgroup", "create", "-b", "/b", "--console-socket", "/s", "id9"], ("create", "id9")),
    ],
)
def test_oci_command_and_object_id(args, expected):
    assert oci_command(args) == expected


def test_parse_oci_and_cni_lines():
    call = parse_line("oci\t100\t105\t900\t0\t--root\t/r\tcreate\t--bundle\t/b\tc1\n")
    assert call == Call("oci", 100, 105, 900, 0, "create", "c1")
    assert call.duration_ns == 800
    cni = parse_line("cni\t10\t11\t50\t0\tADD\tsandbox1")
    assert (cni.kind, cni.command, cni.object_id) == ("cni", "ADD", "sandbox1")
    assert parse_line("cni\t10\t11\t50\t1\tVERSION\t").object_id == ""


@pytest.mark.parametrize("line", ["", "oci\t1\t2", "xyz\t1\t2\t3\t0", "oci\t1\tx\t3\t0\tstart\tc"])
def test_bad_trace_lines_are_refused(line):
    with pytest.raises(TraceFormatError):
        parse_line(line)


def call(kind, start, end, command="create", oid="c"):
    return Call(kind, start, start, end, 0, command, oid)


def test_parts_cut_the_op_without_gaps_or_overlaps():
    w = OpWindow("RunPodSandbox", 0, 100)
    calls = [
        call("cni", 10, 30, "ADD"),
        call("cni", 12, 20, "ADD"),  # host-local inside bridge: counted once
        call("oci", 40, 60),
        call("oci", 55, 70, "start"),  # overlaps the previous call: the union counts
    ]
    p = parts(w, calls)
    assert p == {"before": 10, "network": 20, "runtime": 30, "between": 10, "after": 30}
    assert sum(p.values()) == 100 and list(p) == list(PARTS)


def test_parts_clip_calls_to_the_op_and_handle_none():
    w = OpWindow("StopContainer", 100, 200)
    assert parts(w, []) == {"before": 100, "network": 0, "runtime": 0, "between": 0, "after": 0}
    # A call started before the op and one running past its end: only the inside counts.
    p = parts(w, [call("oci", 50, 120, "kill"), call("oci", 190, 250, "delete")])
    assert p == {"before": 0, "network": 0, "runtime": 30, "between": 70, "after": 0}


def test_attribute_picks_the_op_a_call_overlaps_most_and_drops_calls_outside():
    ops = [OpWindow("StartContainer", 0, 100), OpWindow("StopContainer", 200, 300)]
    a, b, outside = call("oci", 10, 20, "start"), call("oci", 290, 320, "delete"), call("oci", 120, 150, "state")
    straddle = call("oci", 90, 230, "kill")  # 10 ns in the first op, 30 in the second
    got = attribute(ops, [a, b, outside, straddle])
    assert got == {0: [a], 1: [b, straddle]}


def test_trace_reader_follows_the_file_and_hands_out_calls_by_id(tmp_path):
    path = tmp_path / "trace" / "calls.trace"
    reader = TraceReader(str(path))
    reader.arm()
    assert path.exists() and path.read_text() == ""
    now = time.monotonic_ns()
    old = now - 10**12  # 1000 s ago: a call nobody asked for in time is dropped
    with open(path, "a") as fh:
        fh.write(f"oci\t{now}\t{now}\t{now}\t0\tcreate\tc1\n")
        fh.write(f"cni\t{now}\t{now}\t{now}\t0\tADD\ts1\n")
        fh.write(f"oci\t{old}\t{old}\t{old}\t0\tstate\told1\n")
        fh.write("garbage\n")
        fh.write(f"oci\t{now}\t{now}\t{now}\t0\tsta")  # a line still being written
    assert [c.command for c in reader.take({"c1"})] == ["create"]
    assert reader.take({"c1"}) == []  # taken once
    with open(path, "a") as fh:
        fh.write("rt\tc1\n")
    assert sorted(c.command for c in reader.take({"c1", "s1", "old1", ""})) == ["ADD", "start"]
    assert reader.bad_lines == 1
    reader.disarm()
    assert not path.exists()
    reader.disarm()  # twice is fine
