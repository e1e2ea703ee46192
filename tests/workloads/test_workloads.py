"""Compositions: the format's errors, the recipes' expansions, plans and the commands."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.cli import main
from hugetlbsim.format.loader import ScenarioError, load_text
from hugetlbsim.runner import run
from hugetlbsim.workloads import emit, expand, load_composition, load_composition_text, plan
from hugetlbsim.workloads.plan import smallest
from hugetlbsim.workloads.units import SizeError, pages, parse_size

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "workloads").glob("*.yaml"))


def comp(body: str) -> str:
    return "workload: 1\n" + body


def test_sizes_need_units_and_round_up() -> None:
    assert parse_size("8GiB") == 8 << 30
    assert parse_size("512Mi") == 512 << 20
    assert pages(parse_size("37MiB"), "2M") == 19
    with pytest.raises(SizeError):
        parse_size("512")
    with pytest.raises(SizeError):
        parse_size(512)
    with pytest.raises(SizeError):
        parse_size("8GB")


@pytest.mark.parametrize(("body", "where", "what"), [
    ("pool: 8GB\nprograms:\n  - jvm: {heap: 1GiB}\n", ":2:7:", "pool"),
    ("programs:\n  - mysql: {}\n", ":3:5:", "unknown program"),
    ("programs:\n  - jvm: {heap: 1024}\n", ":3:17:", "unit"),
    ("programs:\n  - jvm: {}\n", ":3:", "needs 'heap'"),
    ("pods:\n  - {name: a, runtime: docker, programs: [jvm: {heap: 1GiB}]}\n", ":3:", "runtime"),
    ("pods:\n  - {name: a, hugepages: {3Mi: 1GiB}}\n", ":3:", "page size"),
    ("programs: []\n", ":1:", "no program"),
    ("programs:\n  - postgres: {huge_pages: 'on'}\n", ":3:", "shared_memory"),
])
def test_composition_errors_point_at_the_line(body: str, where: str, what: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_composition_text(comp(body), "w.yaml")
    assert where in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_expands_to_a_loadable_scenario_and_plans(path: Path) -> None:
    c = load_composition(path)
    scenario = load_text(emit(expand(c)), str(path))
    assert run(scenario, ModelBackend()).steps
    p = plan(c)
    k = p.kernels[0]
    assert k.min_pool is not None and k.verified
    assert p.seconds < 10


def test_at_least_six_examples_with_the_promised_ones() -> None:
    names = {p.stem for p in EXAMPLES}
    assert len(names) >= 6
    assert {"postgres-runc", "postgres-crun", "qemu-three-guests-noreserve",
            "dpdk-single-file"} <= names


def test_runc_fails_at_mmap_crun_kills_at_fault() -> None:
    runc = plan(load_composition(ROOT / "examples/workloads/postgres-runc.yaml")).kernels[0]
    crun = plan(load_composition(ROOT / "examples/workloads/postgres-crun.yaml")).kernels[0]
    first = runc.given.failures[0]
    assert (first.stage, first.result, first.note.on_fail) == ("mmap", "ENOMEM", "exits")
    assert "rsvd.max" in (first.explain or "")
    first = crun.given.failures[0]
    assert (first.stage, first.result, first.note.on_fail) == ("fault", "SIGBUS", "killed")
    assert first.note.process == "db-postgres-b2"
    assert runc.min_limits == crun.min_limits == {"db": 550}


def test_qemu_noreserve_host_kills_the_third_guest() -> None:
    k = plan(load_composition(ROOT / "examples/workloads/qemu-three-guests-noreserve.yaml"))
    first = k.kernels[0].given.failures[0]
    assert (first.note.process, first.stage, first.result) == ("vm3", "fault", "SIGBUS")
    assert k.kernels[0].min_pool == 3 * 4096


def test_try_falls_back_and_the_pool_stays_untouched() -> None:
    c = load_composition(ROOT / "examples/workloads/postgres-try-small-pool.yaml")
    k = plan(c).kernels[0]
    assert k.given.failures[0].note.on_fail == "falls-back"
    assert k.given.peak_pool == 0


def test_plans_per_kernel_line() -> None:
    c = load_composition(ROOT / "examples/workloads/postgres-crun.yaml")
    assert [k.line for k in plan(c, ["6.1", "6.12", "6.18"]).kernels] == ["6.1", "6.12", "6.18"]


def test_smallest_bisects_without_a_good_guess() -> None:
    assert smallest(lambda x: x >= 37, 1000) == 37
    assert smallest(lambda x: x >= 37, 1000, guess=900) == 37
    assert smallest(lambda x: x >= 0, 10, guess=0) == 0


def test_dpdk_file_per_page_keeps_its_files_after_exit() -> None:
    text = comp("pool: 16\nstop: true\nprograms:\n  - dpdk: {memory: 8MiB}\n")
    trace = run(expand(load_composition_text(text)).scenario, ModelBackend())
    assert trace.steps[-1].state["free"] == 12        # 4 pages still in rtemap files
    text = text.replace("{memory: 8MiB}", "{memory: 8MiB, huge_unlink: on}")
    trace = run(expand(load_composition_text(text)).scenario, ModelBackend())
    assert trace.steps[-1].state["free"] == 16


def test_commands(tmp_path: Path) -> None:
    cli = CliRunner()
    example = str(ROOT / "examples/workloads/postgres-runc.yaml")
    emitted = cli.invoke(main, ["workload", example, "--emit"])
    assert emitted.exit_code == 0 and "# db-postgres start:" in emitted.output
    load_text(emitted.output)
    summary = cli.invoke(main, ["workload", example])
    assert summary.exit_code == 0 and "mmap ENOMEM" in summary.output
    planned = cli.invoke(main, ["plan", *map(str, EXAMPLES), "--kernel", "6.1,6.18"])
    assert planned.exit_code == 0, planned.output
    assert planned.output.count("smallest pool") == 2 * len(EXAMPLES)
    data = json.loads(cli.invoke(main, ["plan", example, "--json"]).output)
    assert data[0]["kernels"][0]["failures"][0]["stage"] == "mmap"
    bad = cli.invoke(main, ["plan", example, "--kernel", "5.4"])
    assert bad.exit_code == 2
    broken = tmp_path / "w.yaml"
    broken.write_text("workload: 1\npool: lots\nprograms:\n  - jvm: {heap: 1GiB}\n")
    assert cli.invoke(main, ["plan", str(broken)]).exit_code == 2


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="no matplotlib")
def test_sweep_draws(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    example = str(ROOT / "examples/workloads/postgres-crun.yaml")
    r = CliRunner().invoke(main, ["plan", example, "--sweep", "limit:db", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    r = CliRunner().invoke(main, ["plan", example, "--sweep", "limit:nope", "-o", str(out)])
    assert r.exit_code == 2


def test_sweep_without_matplotlib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    example = str(ROOT / "examples/workloads/postgres-crun.yaml")
    r = CliRunner().invoke(main, ["plan", example, "--sweep", "pool", "-o", "x.png"])
    assert r.exit_code == 3 and "plot" in r.output
