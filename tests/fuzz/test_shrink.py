"""The delta-debugging shrinker: planted divergences shrink to their minimal steps, every
candidate stays valid, and the saved file records the reference side."""

from __future__ import annotations

from collections.abc import Callable

from planting import Switch, off

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.format.loader import dump_scenario, load_text
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.fuzz.campaign import diverge, execute
from hugetlbsim.fuzz.generate import GenOptions, generate
from hugetlbsim.fuzz.shrink import scenario_text, shrink
from hugetlbsim.fuzz.world import is_valid
from hugetlbsim.record import with_expect
from hugetlbsim.runner import run


def _private_anon_partial_munmap(scenario: Scenario) -> bool:
    """The planted "divergence": init munmaps a private anon mapping from page 1 on."""
    private = {s.args["map"] for s in scenario.steps if s.op == "mmap" and s.args["anon"]
               and not s.args["shared"] and s.args["proc"] == "init"}
    return any(s.op == "munmap" and s.args["proc"] == "init" and s.args["map"] in private
               and s.args["offset"] >= 1 for s in scenario.steps)


def _first(predicate: Callable[[Scenario], bool], options: GenOptions | None = None) -> Scenario:
    return next(sc for seed in range(500) if predicate(sc := generate(seed, options)))


def test_shrinks_a_planted_predicate_to_its_two_steps() -> None:
    scenario = _first(_private_anon_partial_munmap)
    assert len(scenario.steps) > 5
    calls: list[Scenario] = []

    def predicate(candidate: Scenario) -> bool:
        assert is_valid(candidate)
        calls.append(candidate)
        return _private_anon_partial_munmap(candidate)

    small = shrink(scenario, predicate)
    name = small.steps[0].args["map"]
    assert dump_scenario(small).split("steps:\n")[1] == (
        f"  - mmap: {{proc: init, map: {name}, anon: true, length: 2, shared: false}}\n"
        f"  - munmap: {{proc: init, map: {name}, offset: 1}}\n")
    assert (small.pool_pages, small.pool_overcommit) == (0, 0)
    assert len(calls) == len({dump_scenario(c) for c in calls}), "a candidate was run twice"


def test_result_is_one_minimal_and_within_budget() -> None:
    scenario = generate(3)

    def has_fork_and_touch(sc: Scenario) -> bool:
        return any(s.op == "fork" for s in sc.steps) and any(s.op == "touch" for s in sc.steps)

    assert has_fork_and_touch(scenario)
    calls = 0

    def predicate(candidate: Scenario) -> bool:
        nonlocal calls
        calls += 1
        return has_fork_and_touch(candidate)

    small = shrink(scenario, predicate, budget=500)
    assert calls <= 500
    assert has_fork_and_touch(small)
    assert sorted(s.op for s in small.steps) == ["fork", "mmap", "touch"]
    load_text(dump_scenario(small))
    limited = shrink(scenario, has_fork_and_touch, budget=3)
    assert has_fork_and_touch(limited) and len(limited.steps) <= len(scenario.steps)


def test_a_predicate_that_does_not_hold_leaves_the_scenario() -> None:
    scenario = generate(5)
    assert shrink(scenario, lambda _: False) is scenario


def test_shrinks_a_planted_model_bug_against_the_real_model(
        planted: Callable[[str], Switch]) -> None:
    """Model with a planted bug (a punch drops the reservations of never-faulted pages) against
    the real model: the divergence shrinks to a reserving shared mapping and the punch."""
    switch = planted("punch")

    def diverges(candidate: Scenario) -> bool:
        bad = execute(candidate, ModelBackend())
        good = off(switch, lambda: execute(candidate, ModelBackend()))
        return diverge(candidate, good, bad, watermarks=True) is not None

    scenario = _first(diverges, GenOptions(focus=("punch",)))
    small = shrink(scenario, diverges)
    assert diverges(small)
    assert len(small.steps) <= 4
    assert small.steps[-1].op == "punch"
    assert any(s.op == "mmap" and s.args["shared"] for s in small.steps)


def test_with_expect_records_the_reference_side() -> None:
    scenario = generate(11)
    trace = run(scenario, ModelBackend())
    recorded = with_expect(scenario, trace)
    text = scenario_text(recorded, ["found by a test", "second line"])
    assert text.startswith("# found by a test\n# second line\nformat: 1\n")
    loaded = load_text(text)
    assert all(step.expect and "result" in step.expect for step in loaded.steps)
    assert run(loaded, ModelBackend()).failures == []
