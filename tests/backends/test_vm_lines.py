"""The model follows each real kernel line, live: the kernel-line scenarios (one per switch,
tests/kernel-lines/) run in a guest of every cached Debian kernel, one boot per kernel, and the
model at that kernel's point must show the same at every step."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_vm import KERNELS, VM_REASON

from hugetlbsim.backends.base import prepare
from hugetlbsim.backends.model import ModelBackend
from hugetlbsim.backends.vm.backend import backend_from_spec
from hugetlbsim.format.loader import load
from hugetlbsim.model.kernels import kernel
from hugetlbsim.runner import run
from hugetlbsim.trace import compare

LINES = Path(__file__).resolve().parents[1] / "kernel-lines"


REASON = VM_REASON
UNAMES = KERNELS


@pytest.mark.vm
@pytest.mark.skipif(REASON is not None, reason=str(REASON))
@pytest.mark.parametrize("uname", UNAMES or ["none"])
def test_model_follows_the_guest_kernel(uname: str) -> None:
    scenarios = [load(p) for p in sorted(LINES.glob("*.yaml"))]
    assert scenarios, "no kernel-line scenarios"
    real = backend_from_spec(f"vm:{uname}")
    prepare(real, scenarios)
    model = ModelBackend("6.18", kernel(uname).name)
    for scenario in scenarios:
        recorded = run(scenario, real)
        assert recorded.kernel == uname
        diffs = compare(run(scenario, model), recorded)
        assert not diffs, (f"{scenario.path} on {uname}: {len(diffs)} steps differ, first "
                           f"{diffs[0]}")


@pytest.mark.vm
@pytest.mark.skipif(REASON is not None, reason=str(REASON))
def test_fuzz_against_a_guest() -> None:
    """A small campaign against the first cached kernel: generated scenarios, one boot, the
    model at the guest's point, 0 divergences."""
    from click.testing import CliRunner

    from hugetlbsim.fuzz.cli import fuzz

    result = CliRunner().invoke(fuzz, ["--against", f"vm:{UNAMES[0]}", "--count", "6",
                                       "--seed", "11", "--out", "/tmp/hugetlbsim-fuzz-vm-test"])
    assert result.exit_code == 0, result.output
    assert "6 scenarios" in result.output and "0 divergences" in result.output


def test_numa_guest_command_line() -> None:
    """vm:LINE?numa=2: two nodes, each with its own memory backend and CPU."""
    from hugetlbsim.backends.vm.backend import parse_spec
    from hugetlbsim.backends.vm.boot import BootOptions, numa_args

    assert parse_spec("vm:6.12?numa=2").options == (("numa", 2),)
    assert numa_args(BootOptions()) == []
    assert numa_args(BootOptions(memory_mb=2048, numa=2)) == [
        "-object", "memory-backend-ram,id=mem0,size=1024M",
        "-numa", "node,nodeid=0,cpus=0,memdev=mem0",
        "-object", "memory-backend-ram,id=mem1,size=1024M",
        "-numa", "node,nodeid=1,cpus=1,memdev=mem1"]


@pytest.mark.vm
@pytest.mark.skipif(REASON is not None, reason=str(REASON))
def test_numa_guest_records_per_node_pools() -> None:
    """A two-node guest splits an 8-page pool 4/4 and the trace says so per node; a fault
    takes its page from one node."""
    real = backend_from_spec(f"vm:{UNAMES[-1]}?numa=2")
    trace = run(load(Path(__file__).resolve().parents[2] / "examples" / "shared-file-basics.yaml"),
                real)
    first = trace.steps[0].state["nodes"]
    assert first == {"node0": {"total": 4, "free": 4, "surp": 0},
                     "node1": {"total": 4, "free": 4, "surp": 0}}
    last = trace.steps[-1].state
    assert sum(n["free"] for n in last["nodes"].values()) == last["free"]


def test_v1_mount_waits_out_ebusy_without_a_dying_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """On 6.1 (no nr_dying_subsys_hugetlb) a v1 mount right after v2 scenarios is EBUSY for a
    moment (found by fuzz --against vm:6.1, seed 100350): the mount is tried again."""
    from hugetlbsim.backends import kernel_cgroup

    answers = iter(["EBUSY", "EBUSY", "ok"])
    monkeypatch.setattr(kernel_cgroup.ks, "mount", lambda *a: next(answers))
    monkeypatch.setattr(kernel_cgroup, "_dying_v2", lambda: 0)
    assert kernel_cgroup.v1_mount_with_retry("/nonexistent") == "ok"
