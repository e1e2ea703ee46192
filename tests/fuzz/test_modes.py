"""Which sides the fuzzer compares: policies, this machine's kernel, or a vm:LINE guest; and
which of them may get memory_accounting scenarios."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

import hugetlbsim.fuzz.campaign as campaign_mod
from hugetlbsim.fuzz.campaign import Options, campaign, is_mode, memcg_refused
from hugetlbsim.fuzz.cli import fuzz
from hugetlbsim.fuzz.generate import GenOptions


@pytest.mark.parametrize(("mode", "ok"), [("policies", True), ("kernel", True),
                                          ("vm:6.1", True), ("vm:6.12.117+deb12-cloud-amd64", True),
                                          ("vm", False), ("model", False), ("", False)])
def test_is_mode(mode: str, ok: bool) -> None:
    assert is_mode(mode) is ok


@pytest.mark.parametrize(("args", "message"), [
    (["--against", "nope"], "'nope': use policies, kernel or vm:LINE"),
    (["--against", "vm:6.1?mem=lots"], "bad vm option"),
    (["--against", "vm:6.1", "--jobs", "2"], "drop --jobs"),
])
def test_bad_modes_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(fuzz, [*args, "--count", "1"])
    assert result.exit_code == 2
    assert message in result.output


class _Guest:
    """A stand-in for a vm backend: only its ``uname -r`` is asked."""

    def __init__(self, uname: str) -> None:
        self.uname = uname

    def version(self) -> str:
        return self.uname


@pytest.fixture
def guests(monkeypatch: pytest.MonkeyPatch) -> None:
    for mode, uname in (("vm:6.1", "6.1.0-57-cloud-amd64"),
                        ("vm:6.12", "6.12.117+deb12-cloud-amd64")):
        monkeypatch.setitem(campaign_mod._REFERENCES, mode, _Guest(uname))


@pytest.mark.usefixtures("guests")
def test_memcg_only_where_both_sides_run_it() -> None:
    """memory_hugetlb_accounting came in 6.7: a 6.1 guest and the model at 6.1 refuse it, the
    host's kernel backend refuses every memory_accounting scenario."""
    options = Options()
    assert memcg_refused("policies", options) is None
    assert memcg_refused("vm:6.12", options) is None
    assert "6.1.192 has no memory_hugetlb_accounting" in (memcg_refused("vm:6.1", options) or "")
    assert "machine-wide" in (memcg_refused("kernel", options) or "")
    memcg = Options(gen=GenOptions(cgroups="v2", memory_accounting=0.5))
    with ThreadPoolExecutor(1) as executor, pytest.raises(ValueError, match=r"6\.1\.192"):
        campaign("vm:6.1", executor, seed=0, count=1, options=memcg)


@pytest.mark.usefixtures("guests")
@pytest.mark.parametrize(("args", "message"), [
    (["--against", "kernel", "--memcg", "0.3"], "machine-wide"),
    (["--against", "vm:6.1", "--memcg", "0.3"], "has no memory_hugetlb_accounting"),
    (["--cgroups", "v1", "--memcg", "0.3"], "it needs cgroup v2"),
    (["--memcg", "2"], "is not in the range 0<=x<=1"),
])
def test_refused_memcg_is_a_usage_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(fuzz, [*args, "--count", "1"])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_memcg_policies_campaign_runs() -> None:
    """Both policies follow 6.18: memory_accounting scenarios run there and agree."""
    options = Options(gen=GenOptions(cgroups="v2", memory_accounting=1.0), shrink=False)
    with ThreadPoolExecutor(1) as executor:
        summary = campaign("policies", executor, seed=40, count=30, batch=10, options=options)
    assert summary.scenarios == 30 and summary.findings == []
