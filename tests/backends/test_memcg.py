"""``memory_accounting: true``: cgroup2's memory_hugetlb_accounting, on real kernels.

Only a vm guest may remount its cgroup2 with the option (it is global to the machine); the
host refuses the scenario before touching anything.  The ``memcg-*`` examples and the memcg
regressions were recorded on 6.12.117 (vm): replayed there, every expectation holds and the
model at 6.12 shows the same; 6.1 refuses the mount option (EINVAL), as the model at 6.1
refuses the scenario.
The vm-marked tests skip, saying why, without qemu or a cached 6.1 / 6.12 kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_vm import VM_REASON

from hugetlbsim.backends import kernel_cgroup
from hugetlbsim.backends.base import ScenarioRefused, prepare
from hugetlbsim.backends.kernel import KernelBackend
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.backends.vm import cache as vmcache
from hugetlbsim.cli import main
from hugetlbsim.format.loader import load
from hugetlbsim.runner import run
from hugetlbsim.trace import compare

ROOT = Path(__file__).resolve().parents[2]
MEMCG = [p for p in sorted(ROOT.glob("examples/*.yaml")) + sorted(
    ROOT.glob("tests/regressions/*.yaml")) if load(p).memory_accounting]
"""The examples and regressions recorded with memory accounting (on 6.12.117)."""
MB2 = 2 << 20


def _cached(line: str) -> str | None:
    """Why no kernel of ``line`` can be booted here, or None."""
    if VM_REASON is not None:
        return VM_REASON
    try:
        vmcache.resolve_cached(line)
    except vmcache.KernelNotCached as e:
        return f"no cached {line} kernel ({e}); run: hugetlbsim kernels fetch {line}"
    return None


REASON_612, REASON_61 = _cached("6.12"), _cached("6.1")


def test_there_are_memcg_examples() -> None:
    assert len(MEMCG) >= 4
    assert all(load(p).memory_accounting for p in MEMCG)


def test_the_host_refuses_memory_accounting() -> None:
    """Without a disposable machine the scenario is refused before anything is touched."""
    with pytest.raises(ScenarioRefused, match="memory_accounting"):
        KernelBackend().open(load(MEMCG[0]))


def test_diff_reports_a_refused_scenario() -> None:
    """diff says which file the real kernel refused; with nothing else to compare, exit 3."""
    result = CliRunner().invoke(main, ["diff", "--backend", "kernel", "--kernel", "6.12",
                                       str(MEMCG[0])])
    assert result.exit_code == 3, result.output
    assert f"{MEMCG[0]}: not run: " in result.output
    assert "1 scenario: 0 same, 0 differ, 1 not run (refused)" in result.output


def test_the_model_before_6_7_refuses_it() -> None:
    with pytest.raises(ScenarioRefused, match="8cba9576df60"):
        run(load(MEMCG[0]), ModelBackend("6.18", "6.1"))


def _cgroup_dir(tmp_path: Path, stat: dict[str, int], current: int) -> str:
    (tmp_path / "cpu.stat").write_text("usage_usec 1\n")
    (tmp_path / "memory.stat").write_text("".join(f"{k} {v}\n" for k, v in stat.items()))
    (tmp_path / "memory.current").write_text(f"{current}\n")
    return str(tmp_path)


def test_memory_stat_hugetlb_line_is_read_where_it_exists(tmp_path: Path) -> None:
    """6.14+: the ``hugetlb`` line, in bytes."""
    stat = {"anon": 450560, "file": 0, "kernel": 20480, "sock": 0, "hugetlb": 3 * MB2}
    assert kernel_cgroup.memory_hugetlb(_cgroup_dir(tmp_path, stat, 7024640)) == 3


def test_memory_hugetlb_from_memory_current_on_6_12(tmp_path: Path) -> None:
    """6.7-6.13: memory.current less anon, file, kernel and sock; the rest beyond whole huge
    pages is the CPU's charge stock (figures of cgroup root at step 12 of a 6.12.117 run:
    7 024 640 bytes charged, 475 136 anon, 20 480 kernel: 3 pages and 237 568 bytes)."""
    stat = {"anon": 475136, "file": 0, "kernel": 20480, "sock": 0, "slab": 9000}
    assert kernel_cgroup.memory_hugetlb(_cgroup_dir(tmp_path, stat, 7024640)) == 3


def test_an_inexact_memory_figure_is_an_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A remainder larger than every CPU's stock together, in every reading, means something
    else is charged: no figure rather than a wrong one."""
    monkeypatch.setattr(kernel_cgroup, "MEMORY_PAUSE", 0.0)
    stat = {"anon": 0, "file": 0, "kernel": 0, "sock": 0}
    with pytest.raises(RuntimeError, match="cannot be read exactly"):
        kernel_cgroup.memory_hugetlb(_cgroup_dir(tmp_path, stat, MB2 + MB2 - 4096))


def test_a_passing_inexact_memory_figure_is_read_again(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker memory still moving (6.12.117: remainders of -8 192 and 565 248 bytes) is read
    again until the remainder is a stock at most."""
    monkeypatch.setattr(kernel_cgroup, "MEMORY_PAUSE", 0.0)
    stat = {"anon": 475136, "file": 0, "kernel": 20480, "sock": 0}
    directory = _cgroup_dir(tmp_path, stat, 0)
    currents = iter([3 * MB2 + 495616 - 8192, 3 * MB2 + 495616 + 565248, 3 * MB2 + 495616])
    read_int = kernel_cgroup.ks.read_int
    monkeypatch.setattr(kernel_cgroup.ks, "read_int", lambda path: next(currents)
                        if path.endswith("memory.current") else read_int(path))
    assert kernel_cgroup.memory_hugetlb(directory) == 3


@pytest.mark.vm
@pytest.mark.skipif(REASON_612 is not None, reason=str(REASON_612))
def test_memcg_examples_replay_on_6_12() -> None:
    """The examples hold on 6.12 (one boot), and the model at 6.12 shows the same."""
    from hugetlbsim.backends.vm.backend import backend_from_spec

    scenarios = [load(p) for p in MEMCG]
    real = backend_from_spec("vm:6.12")
    prepare(real, scenarios)
    model = ModelBackend("6.18", "6.12")
    for scenario in scenarios:
        recorded = run(scenario, real)
        assert not recorded.failures, f"{scenario.path}: {recorded.failures[0]}"
        assert any(c.get("memory") for s in recorded.steps
                   for c in s.state["cgroups"].values()), "no page was ever charged"
        diffs = compare(run(scenario, model), recorded)
        assert not diffs, f"{scenario.path}: {diffs[0]}"


@pytest.mark.vm
@pytest.mark.skipif(REASON_61 is not None, reason=str(REASON_61))
def test_6_1_refuses_the_mount_option() -> None:
    """6.1 has no memory_hugetlb_accounting: the guest's remount is EINVAL, reported as the
    kernel refusing the scenario (exit 3, one line), as the model at 6.1 does."""
    result = CliRunner().invoke(main, ["run", "--backend", "vm:6.1", str(MEMCG[0])])
    assert result.exit_code == 3, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("backend unavailable: in the 6.1.0-")
    assert "refuses cgroup2's memory_hugetlb_accounting mount option (EINVAL" in last
    model = CliRunner().invoke(main, ["run", "--kernel", "6.1", str(MEMCG[0])])
    assert model.exit_code == 3
    assert "no memory_hugetlb_accounting" in model.output
