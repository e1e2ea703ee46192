"""The runner with a fake backend: expectations, the JSON trace's shape, and compare()."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.record import Failure
from hugetlbsim.runner import run
from hugetlbsim.trace import ABSENT, Difference, Trace, compare

U64 = 1 << 64


class FakeSession:
    """A toy pool: mmap reserves ``length`` pages (ENOMEM beyond the free ones), touch faults.

    ``skew`` is added to Rsvd after every step and ``extra_cgroup`` shows a cgroup ``a``, to make
    a second backend disagree; a step whose op is in ``crash_on`` raises.
    """

    def __init__(self, scenario: Scenario, backend: FakeBackend) -> None:
        self.backend = backend
        self.total = self.free = scenario.pool_pages
        self.rsvd = self.usage = 0
        self.limit: int | None = None
        self.why: str | None = None
        self.closed = False

    def apply(self, op: str, args: Mapping[str, Any]) -> str:
        if op in self.backend.crash_on:
            raise RuntimeError(f"the fake cannot {op}\nsecond line")
        self.why = None
        if op == "pool" and args["pages"] is not None:
            self.free += args["pages"] - self.total
            self.total = args["pages"]
        elif op == "cgroup":
            self.limit = None if args["limit"] in (None, "max") else args["limit"]
        elif op == "mmap":
            if args["length"] > self.free - self.rsvd:
                self.why = "not enough free pages to reserve"
                return "ENOMEM"
            self.rsvd += args["length"]
        elif op == "touch":
            self.rsvd -= args["count"]
            self.free -= args["count"]
            self.usage += args["count"]
        self.rsvd += self.backend.skew
        return "ok"

    def state(self) -> dict[str, Any]:
        cgroups = {"root": {"usage": self.usage, "rsvd": self.rsvd, "max_usage": self.usage,
                            "rsvd_max_usage": self.rsvd + self.backend.skew, "limit": None,
                            "rsvd_limit": None, "failcnt": 0, "rsvd_failcnt": 0}}
        if self.limit is not None or self.backend.extra_cgroup:
            cgroups["a"] = {**cgroups["root"], "limit": self.limit}
        return {"total": self.total, "free": self.free, "rsvd": self.rsvd, "surp": 0,
                "nr_hugepages": self.total, "cgroups": cgroups,
                "mounts": {"hp": {"free": None}, "sized": {"free": 3}},
                "files": {"hp/f": {"blocks": 0, "size": 4, self.backend.name: True}}}

    def explain(self) -> str | None:
        return self.why

    def kernel(self) -> str:
        return self.backend.version()

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    """A `Backend` over `FakeSession`; remembers its sessions."""

    def __init__(self, name: str = "model", skew: int = 0, crash_on: tuple[str, ...] = (),
                 extra_cgroup: bool = False) -> None:
        self.name = name
        self.skew = skew
        self.extra_cgroup = extra_cgroup
        self.crash_on = crash_on
        self.sessions: list[FakeSession] = []

    def version(self) -> str:
        return "6.18" if self.name == "model" else "6.18.44-fake"

    def open(self, scenario: Scenario) -> FakeSession:
        self.sessions.append(FakeSession(scenario, self))
        return self.sessions[-1]


SCENARIO = """\
format: 1
name: toy
pool: {pages: 8}
steps:
  - spawn: {proc: p}
  - mmap: {proc: p, map: m, anon: true, length: 4}
    expect: {result: ok, rsvd: 4, free: 8}
  - touch: {proc: p, map: m, page: 0, count: 2}
    expect: {rsvd: 2, free: 6, cgroup: {root: {usage: 2, limit: max, rsvd_limit: null}}}
  - mmap: {proc: p, map: big, anon: true, length: 9}
    expect: {result: ENOMEM}
"""


def test_passing_expectations_and_closed_session() -> None:
    backend = FakeBackend()
    trace = run(load_text(SCENARIO, "toy.yaml"), backend)
    assert trace.failures == []
    assert [s.result for s in trace.steps] == ["ok", "ok", "ok", "ENOMEM"]
    assert trace.steps[3].explain == "not enough free pages to reserve"
    assert backend.sessions[0].closed


def test_failed_expectations_name_step_line_key_and_values() -> None:
    text = SCENARIO.replace("rsvd: 2, free: 6", "rsvd: 3, free: 6").replace(
        "usage: 2, limit: max", "usage: 2, limit: 5, max_usage: 7").replace(
        "{result: ENOMEM}", "{result: ok, cgroup: {nope: {usage: 0}}}")
    trace = run(load_text(text, "toy.yaml"), FakeBackend())
    assert trace.failures == [
        Failure(2, 8, "rsvd", 3, 2),
        Failure(2, 8, "cgroup.root.limit", 5, None),
        Failure(2, 8, "cgroup.root.max_usage", 7, 2),
        Failure(3, 10, "result", "ok", "ENOMEM"),
        Failure(3, 10, "cgroup.nope.usage", 0, ABSENT),
    ]
    assert str(trace.failures[0]) == "step 2: rsvd expected 3, got 2"
    assert str(trace.failures[4]) == "step 3: cgroup.nope.usage expected 0, got absent"


def test_counters_compare_unsigned() -> None:
    text = """\
format: 1
steps:
  - spawn: {proc: p}
    expect: {rsvd: 18446744073709551615, cgroup: {root: {rsvd: 0}}}
"""
    trace = run(load_text(text), FakeBackend(skew=-1))
    assert trace.steps[0].state["rsvd"] == -1
    assert trace.failures == [Failure(0, 3, "cgroup.root.rsvd", 0, -1)]
    assert str(Failure(0, 3, "rsvd", 0, U64 - 1)) == "step 0: rsvd expected 0, got 2^64-1"


def test_session_closed_when_a_step_raises() -> None:
    backend = FakeBackend(crash_on=("touch",))
    with pytest.raises(RuntimeError):
        run(load_text(SCENARIO), backend)
    assert backend.sessions[0].closed


def test_json_trace_shape_follows_the_format_page() -> None:
    trace = run(load_text(SCENARIO, "dir/toy.yaml"), FakeBackend())
    doc = json.loads(trace.dumps())
    assert list(doc) == ["format", "backend", "kernel", "scenario", "steps"]
    assert (doc["format"], doc["backend"], doc["kernel"], doc["scenario"]) == (
        1, "model", "6.18", "toy")
    first = doc["steps"][0]
    assert list(first) == ["index", "op", "args", "result", "state"]
    assert first["args"] == {"proc": "p", "cgroup": "root"}
    assert first["state"]["cgroups"]["root"]["limit"] is None
    mmap = doc["steps"][1]["args"]
    assert mmap == {"proc": "p", "map": "m", "anon": True, "offset": 0, "length": 4,
                    "shared": True, "noreserve": False, "writable": True, "populate": False}
    assert doc["steps"][3]["explain"] == "not enough free pages to reserve"
    assert "explain" not in doc["steps"][2]


def test_streamed_json_is_the_dumped_trace_and_keeps_no_step() -> None:
    import io

    from hugetlbsim.trace import JsonStream, StepRecord

    kept = run(load_text(SCENARIO, "dir/toy.yaml"), FakeBackend())
    for text in (SCENARIO, SCENARIO.split("steps:")[0] + "steps: []\n"):
        out = io.StringIO()
        stream = JsonStream(out)
        seen: list[int] = []

        def on_step(t: Trace, r: StepRecord, seen: list[int] = seen,
                    stream: JsonStream = stream) -> None:
            seen.append(r.index)
            stream.step(t, r)

        streamed = run(load_text(text, "dir/toy.yaml"), FakeBackend(), on_step=on_step,
                       keep=False)
        stream.end(streamed)
        whole = run(load_text(text, "dir/toy.yaml"), FakeBackend())
        assert out.getvalue() == whole.dumps()
        assert streamed.steps == [] and seen == [s.index for s in whole.steps]
        assert streamed.failures == whole.failures
    assert len(kept.steps) == 4


def test_trace_named_after_the_file_without_a_name() -> None:
    text = SCENARIO.replace("name: toy\n", "")
    assert run(load_text(text, "dir/no-name.yaml"), FakeBackend()).scenario == "no-name"


def test_compare_same_ignores_watermarks_and_backend_only_keys() -> None:
    a = run(load_text(SCENARIO), FakeBackend("model"))
    b = run(load_text(SCENARIO), FakeBackend("model"))
    b.steps[1].state["cgroups"]["root"]["max_usage"] = 99
    assert compare(a, b) == []
    [diff] = compare(a, b, watermarks=True)
    assert diff.index == 1
    assert diff.differences == (Difference("cgroup.root.max_usage", 0, 99),)


def test_compare_reports_results_counters_and_presence() -> None:
    text = SCENARIO.replace("pages: 8", "pages: 4")
    model = run(load_text(text), FakeBackend("model"))
    kernel = run(load_text(text), FakeBackend("kernel", skew=1, extra_cgroup=True))
    diffs = compare(model, kernel)
    assert [d.index for d in diffs] == [0, 1, 2, 3]
    assert diffs[0].differences == (Difference("rsvd", 0, 1), Difference("cgroup.root.rsvd", 0, 1),
                                    Difference("cgroup.a", ABSENT, "present"))
    assert diffs[1].differences[0] == Difference("result", "ok", "ENOMEM")
    assert (diffs[1].op, diffs[1].line) == ("mmap", 6)


def test_compare_needs_traces_of_one_scenario() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        compare(Trace("model", "6.18", "x"), run(load_text(SCENARIO), FakeBackend()))


def test_the_stream_encodes_as_json_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's encoder (json's C encoder, made once) writes what json.dumps writes; where
    there is no C encoder, it is json.dumps."""
    from json import encoder

    from hugetlbsim import trace

    values: list[Any] = [{"a": [1, None, True, False, "é\n\"", 2**64, -3]}, "x", 7, None, [],
                         {"state": {"cgroups": {"root": {"usage": 0, "limit": None}}}}]
    for value in values:
        assert trace._dumps(value) == json.dumps(value)
    monkeypatch.setattr(encoder, "c_make_encoder", None)
    assert trace._json_encoder() is json.dumps
