"""Campaigns: policies mode finds nothing on a few hundred seeds, any Executor runs the
batches, divergences are found, shrunk and saved, and the ``fuzz`` command reports them."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
from click.testing import CliRunner
from planting import Switch

import hugetlbsim.fuzz.campaign as campaign_mod
import hugetlbsim.fuzz.cli as cli_mod
from hugetlbsim.backends.model import ModelBackend, ModelSession
from hugetlbsim.format.loader import load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.fuzz.campaign import (
    BatchResult,
    Options,
    campaign,
    check,
    ignore_sigint,
    leftover,
    run_batch,
)
from hugetlbsim.fuzz.cli import fuzz
from hugetlbsim.fuzz.generate import GenOptions, generate

P = ParamSpec("P")
T = TypeVar("T")

def test_policies_mode_finds_nothing_on_a_few_hundred_seeds() -> None:
    with ProcessPoolExecutor(2, initializer=ignore_sigint) as executor:
        summary = campaign("policies", executor, seed=0, count=300, batch=50, in_flight=4,
                           options=Options(shrink=False))
    assert summary.scenarios == 300
    assert summary.steps > 300 * 10
    assert summary.findings == []


def test_any_executor_runs_the_batches() -> None:
    """The runner only submits `run_batch` with picklable arguments: a thread pool, a process
    pool or a home-made executor give the same totals as calling the task directly."""
    options = Options(shrink=False)
    direct = run_batch(tuple(range(100, 140)), "policies", options)
    assert pickle.loads(pickle.dumps(direct)) == direct
    pickle.dumps((run_batch, options))
    seen: list[BatchResult] = []
    for executor in (ThreadPoolExecutor(3), _Inline()):
        seen.clear()
        with executor:
            summary = campaign("policies", executor, seed=100, count=40, batch=7, in_flight=3,
                               options=options, on_result=lambda _, r: seen.append(r))
        assert (summary.scenarios, summary.steps) == (direct.scenarios, direct.steps)
        assert sorted(b.scenarios for b in seen) == [5] + [7] * 5


class _Inline(Executor):
    """The smallest executor: runs each task at once in the caller."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_time_limit_stops_submitting() -> None:
    with ThreadPoolExecutor(1) as executor:
        summary = campaign("policies", executor, seed=0, seconds=0.0, batch=5,
                           options=Options(shrink=False))
    assert summary.scenarios == 0


@pytest.fixture
def planted_v7(planted: Callable[[str], Switch],
               monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``planted_v7("munmap")``: the model runs with the planted bug as policy v7 only, so
    policies mode compares the real model (6.18) with a buggy one."""
    def make(mutation: str) -> None:
        switch = planted(mutation)

        class Planted(ModelBackend):
            def open(self, scenario: Scenario) -> ModelSession:
                switch.on = self.policy == "v7"
                return super().open(scenario)

        monkeypatch.setattr(campaign_mod, "ModelBackend", Planted)

    return make


def test_a_planted_bug_is_found_shrunk_and_recorded(
        planted_v7: Callable[[str], None]) -> None:
    planted_v7("munmap")
    result = run_batch(tuple(range(8, 16)), "policies", Options(budget=300))
    found = [f for f in result.findings if f.shrunk is not None]
    assert found, [f.signature for f in result.findings]
    first = found[0]
    assert "rsvd" in first.signature
    assert first.shrunk_steps <= 3 < first.steps
    assert first.shrunk is not None
    saved = load_text(first.shrunk)
    assert saved.name == f"fuzz-policies-seed-{first.seed}"
    assert all(step.expect is not None for step in saved.steps)
    assert f"--seed {first.seed} --count 1" in first.shrunk


def test_a_divergence_that_does_not_come_back_is_flaky(
        planted: Callable[[str], Switch], monkeypatch: pytest.MonkeyPatch) -> None:
    switch = planted("munmap")
    runs = 0

    class Once(ModelBackend):
        """Policy v7 runs with the planted bug the first time only."""

        def open(self, scenario: Scenario) -> ModelSession:
            nonlocal runs
            runs += self.policy == "v7"
            switch.on = self.policy == "v7" and runs == 1
            return super().open(scenario)

    monkeypatch.setattr(campaign_mod, "ModelBackend", Once)
    [finding] = run_batch((9,), "policies", Options()).findings
    assert not finding.reproduced
    assert finding.shrunk is not None and "flaky" in finding.shrunk
    assert finding.shrunk_steps == finding.steps
    assert len(load_text(finding.shrunk).steps) == finding.steps


def test_kernel_guard_predicts_the_6_18_subpool_leak() -> None:
    """A failed mmap on a mount with size= and min_size= loses a reservation for good on
    6.18: such a scenario must never run on the kernel (it left the machine with Rsvd = -1)."""
    text = """format: 1
pool: {pages: 4}
steps:
  - mount: {name: h, size: 5, min_size: 4}
  - create: {file: h/f}
  - mmap: {proc: init, map: a, file: h/f, length: 3}
  - mmap: {proc: init, map: b, file: h/f, offset: 2, length: 3}
    expect: {result: ENOMEM, rsvd: 3}
"""
    scenario = load_text(text)
    # nr_hugepages 0 cannot free anything: min_count = resv + in use wraps to 2^64 - 1
    assert leftover(scenario) == (
        "after teardown the model predicts Total 4, Free 4, Rsvd 2^64-1, Surp 4")
    checked = check(scenario, "kernel", Options())
    assert checked.ref is None and checked.found is None
    assert checked.unsafe is not None
    assert leftover(generate(1)) is None


def test_fuzz_command(tmp_path: Path, planted_v7: Callable[[str], None],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(fuzz, ["--seed", "100", "--count", "30", "--jobs", "1",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "30 scenarios" in result.output and "0 divergences" in result.output
    assert not out.exists()
    planted_v7("munmap")
    monkeypatch.setattr(cli_mod, "ProcessPoolExecutor",
                        lambda max_workers, initializer: ThreadPoolExecutor(max_workers))
    result = runner.invoke(fuzz, ["--seed", "8", "--count", "8", "--jobs", "1",
                                  "--out", str(out)])
    assert result.exit_code == 1, result.output
    saved = sorted(out.glob("policies-seed-*.yaml"))
    assert saved and all(path.name in result.output for path in saved)
    assert (out / ".gitignore").read_text().endswith("*\n")
    for path in saved:
        load_text(path.read_text())
    for bad in (["--count", "1", "--time", "1"], ["--against", "kernel", "--jobs", "2"]):
        result = runner.invoke(fuzz, bad)
        assert result.exit_code == 2 and "Usage" in result.output


def test_options_travel_with_each_batch() -> None:
    options = Options(gen=GenOptions(max_steps=10, min_steps=10), shrink=False)
    result = run_batch((1, 2, 3), "policies", options)
    assert result.steps == 30
