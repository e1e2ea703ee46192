"""States that keep what did not change (`model.snapshot`), and the JSON stream that reuses the
text of what it wrote (`trace.JsonStream`): equal to fresh states and to `Trace.dumps`.

Fuzz scenarios (v1 and v2 cgroups) run with every section kept between snapshots and written
on its own (``SHARED = 1``, ``_HOLE_MEMBERS = 1``) and with none: every state must be equal and
the streamed text identical.  The stream alone gets random states whose parts are reused,
renamed, reordered, dropped and added.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest

from hugetlbsim import trace as trace_mod
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.fuzz.generate import GenOptions, generate
from hugetlbsim.model import snapshot as snapshot_mod
from hugetlbsim.runner import run
from hugetlbsim.trace import JsonStream, StepRecord, Trace


def _run(scenario: Scenario, kept: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    monkeypatch.setattr(snapshot_mod, "SHARED", 1 if kept else 1 << 30)
    monkeypatch.setattr(trace_mod, "_HOLE_MEMBERS", 1 if kept else 1 << 30)
    out = io.StringIO()
    stream = JsonStream(out)
    try:
        trace = run(scenario, ModelBackend(), on_step=stream.step)
    except Exception as exc:  # the same failure on both sides is equal too
        return f"{type(exc).__name__}: {exc}", ""
    stream.end(trace)
    return trace, out.getvalue()


@pytest.mark.parametrize("chunk", range(4))
def test_kept_states_equal_fresh_ones(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    kept_sections = 0
    for seed in range(chunk * 60, (chunk + 1) * 60):
        scenario = generate(seed, GenOptions(cgroups="v2" if seed % 2 else "v1"))
        kept, kept_text = _run(scenario, True, monkeypatch)
        fresh, fresh_text = _run(scenario, False, monkeypatch)
        if isinstance(fresh, str):
            assert kept == fresh
            continue
        assert [s.state for s in kept.steps] == [s.state for s in fresh.steps], seed
        assert kept_text == fresh_text == fresh.dumps(), seed
        for before, after in zip(kept.steps, kept.steps[1:], strict=False):
            kept_sections += sum(after.state[k] is before.state[k]
                                 for k in ("cgroups", "mounts", "files"))
    assert kept_sections > 1000


def test_the_stream_reuses_only_what_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random states built from a pool of parts, reused under the same or another name, in
    another order, with members dropped and added: the stream writes what json.dumps does."""
    monkeypatch.setattr(trace_mod, "_HOLE_MEMBERS", 1)
    rng = random.Random(7)
    parts = [{"usage": i, "limit": None, "regions": [[i, i + 1, None]]} for i in range(6)]
    lists = [[[0, 1, "a"]], [], [[2, 4, None], [5, 6, "b"]]]
    sections: dict[str, dict[str, Any]] = {}
    trace = Trace(backend="fake", kernel="6.18", scenario="shared")
    out = io.StringIO()
    stream = JsonStream(out)
    for index in range(400):
        state: dict[str, Any] = {"total": index, "free": None}
        for key in ("cgroups", "mounts", "files"):
            roll = rng.random()
            if key in sections and roll < 0.3:
                section = sections[key]  # the very same section
            elif key in sections and roll < 0.6:
                section = dict(sections[key])  # the same members, a new section
                if section and rng.random() < 0.5:
                    name = rng.choice(list(section))
                    section[name] = rng.choice(parts)
            else:
                names = rng.sample(["a", "b", "c", "d", "e"], rng.randint(0, 5))
                section = {n: rng.choice(parts) if rng.random() < 0.8 else
                           {"cached": rng.choice(lists), "size": rng.randint(0, 3)}
                           for n in names}
            sections[key] = section
            state[key] = section
        if rng.random() < 0.05:
            state["odd"] = "\0cgroups"  # the stand-in's own text: the step is encoded whole
        record = StepRecord(index=index, op="x", args={"a": index}, result="ok", state=state,
                            explain=rng.choice([None, "why"]))
        trace.steps.append(record)
        stream.step(trace, record)
    stream.end(trace)
    assert out.getvalue() == trace.dumps()
    json.loads(out.getvalue())
