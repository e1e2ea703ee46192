"""The scenario generator: reproducible, always valid for the loader, covering every operation,
within the kernel backend's bounds; and its name tracker agreeing with the loader."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hugetlbsim.format.loader import ScenarioError, dump_scenario, load_text
from hugetlbsim.format.scenario import OPS, Scenario
from hugetlbsim.fuzz.generate import WEIGHTS, GenOptions, generate
from hugetlbsim.fuzz.world import World, is_valid


def _round_trip(scenario: Scenario) -> Scenario:
    return load_text(dump_scenario(scenario), f"seed-{scenario.name}")


def _key(scenario: Scenario) -> tuple[object, ...]:
    return (scenario.pool_pages, scenario.pool_overcommit,
            tuple((s.op, s.args) for s in scenario.steps))


def test_same_seed_same_scenario() -> None:
    for seed in (0, 1, 12345, 2**40 + 7):
        assert _key(generate(seed)) == _key(generate(seed))
        assert dump_scenario(generate(seed)) == dump_scenario(generate(seed))


def test_different_seeds_differ() -> None:
    assert len({dump_scenario(generate(seed)) for seed in range(50)}) == 50


@pytest.mark.parametrize("start", [0, 10_000])
def test_generated_scenarios_load_back_unchanged(start: int) -> None:
    for seed in range(start, start + 100):
        scenario = generate(seed)
        assert is_valid(scenario)
        loaded = _round_trip(scenario)
        assert _key(loaded) == _key(scenario), seed


def test_every_operation_appears() -> None:
    ops = Counter(step.op for seed in range(60) for step in generate(seed).steps)
    assert set(ops) == set(OPS)


def test_bounds() -> None:
    options = GenOptions()
    for seed in range(300):
        scenario = generate(seed, options)
        assert options.min_steps <= len(scenario.steps) <= options.max_steps
        assert scenario.pool_pages <= options.max_pool
        assert scenario.pool_overcommit <= options.max_overcommit
        for step in scenario.steps:
            if step.op == "pool":
                assert (step.args["pages"] or 0) <= options.max_pool
                assert (step.args["overcommit"] or 0) <= options.max_overcommit
        assert sum(step.op == "mount" for step in scenario.steps) <= 8


def test_focus_weights_actions() -> None:
    def count(op: str, options: GenOptions) -> int:
        return sum(s.op == op for seed in range(100) for s in generate(seed, options).steps)

    assert count("punch", GenOptions(focus=("punch",))) > 3 * count("punch", GenOptions())
    focused = [generate(seed, GenOptions(focus=("charged_rmdir",))) for seed in range(20)]
    assert all(any(s.op == "rmdir" for s in sc.steps) for sc in focused)
    assert set(WEIGHTS) >= set(OPS)


def test_world_agrees_with_the_loader_on_broken_scenarios() -> None:
    """Drop random steps of generated scenarios: the tracker and the loader must agree on
    whether what is left is valid."""
    rng = random.Random(7)
    valid = invalid = 0
    for seed in range(150):
        scenario = generate(seed)
        steps = list(scenario.steps)
        for _ in range(rng.randint(1, 3)):
            del steps[rng.randrange(len(steps))]
        candidate = Scenario(steps=tuple(steps), name=scenario.name,
                             pool_pages=scenario.pool_pages)
        try:
            _round_trip(candidate)
            loads = True
        except ScenarioError:
            loads = False
        assert is_valid(candidate) == loads, (seed, dump_scenario(candidate))
        valid += loads
        invalid += not loads
    assert valid > 25 and invalid > 25


def test_world_rules() -> None:
    world = World()
    assert not world.valid("touch", {"proc": "init", "map": "m", "page": 0})
    assert world.valid("cgroup", {"name": "a"})
    assert not world.valid("cgroup", {"name": "a/b"})
    assert not world.valid("cgroup", {"name": "root", "limit": 4})
    assert not world.valid("rmdir", {"cgroup": "root"})
    assert not world.valid("create", {"file": "hp/f"})
    world.apply("mount", {"name": "hp"})
    assert world.valid("create", {"file": "hp/f", "size": 2})
    world.apply("create", {"file": "hp/f"})
    args = {"proc": "init", "map": "m", "file": "hp/f", "length": 4}
    assert world.valid("mmap", args) and not world.valid("mmap", {**args, "length": None})
    world.apply("mmap", args)
    assert world.valid("touch", {"proc": "init", "map": "m", "page": 3})
    assert not world.valid("touch", {"proc": "init", "map": "m", "page": 3, "count": 2})
    assert world.valid("munmap", {"proc": "init", "map": "m", "offset": 4})
    assert not World(nonempty=True).valid("munmap", {"proc": "init", "map": "m"})
    world.apply("munmap", {"proc": "init", "map": "m", "offset": 0, "length": 4})
    assert not world.valid("touch", {"proc": "init", "map": "m", "page": 0})
    world.apply("unlink", {"file": "hp/f"})
    assert not world.valid("create", {"file": "hp/f"})
    world.apply("close", {"file": "hp/f"})
    assert world.valid("create", {"file": "hp/f"})


def test_world_keeps_names_rmdir_and_umount_ended_nameable_but_never_live() -> None:
    """The loader's rule (one tracker): the EBUSY retry is valid; the generator, which picks
    from the live names only, never aims at a name that may be gone."""
    world = World()
    for op, args in [("cgroup", {"name": "a"}), ("spawn", {"proc": "p", "cgroup": "a"}),
                     ("mount", {"name": "hp"}), ("create", {"file": "hp/f"}),
                     ("rmdir", {"cgroup": "a"}), ("umount", {"name": "hp"})]:
        assert world.valid(op, args), (op, args)
        world.apply(op, args)
    assert "a" not in world.cgroups and "hp" not in world.mounts and "hp/f" not in world.files
    assert world.valid("rmdir", {"cgroup": "a"}) and world.valid("umount", {"name": "hp"})
    assert world.valid("close", {"file": "hp/f"}) and world.valid("mount", {"name": "hp"})
    world.apply("mount", {"name": "hp"})
    assert not world.valid("close", {"file": "hp/f"})


def test_memory_accounting_share_keeps_the_steps() -> None:
    """A share of the v2 scenarios gets ``memory_accounting``, drawn from a stream of its own:
    every seed keeps its steps and interface, and no share gives the scenarios of before."""
    plain = [generate(seed, GenOptions(cgroups="mixed")) for seed in range(300)]
    memcg = [generate(seed, GenOptions(cgroups="mixed", memory_accounting=1 / 3))
             for seed in range(300)]
    assert not any(s.memory_accounting for s in plain)
    for a, b in zip(plain, memcg, strict=True):
        assert _key(a) == _key(b) and a.cgroups == b.cgroups
        assert not b.memory_accounting or b.cgroups == "v2"
    v2 = [s for s in memcg if s.cgroups == "v2"]
    share = sum(s.memory_accounting for s in v2) / len(v2)
    assert 0.25 < share < 0.42, share
    everywhere = [generate(seed, GenOptions(cgroups="v2", memory_accounting=1.0))
                  for seed in range(20)]
    assert all(s.memory_accounting for s in everywhere)
    assert all(_round_trip(s).memory_accounting for s in everywhere)
