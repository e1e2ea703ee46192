"""Which sides the fuzzer compares: policies, this machine's kernel, or a vm:LINE guest."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hugetlbsim.fuzz.campaign import is_mode
from hugetlbsim.fuzz.cli import fuzz


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
