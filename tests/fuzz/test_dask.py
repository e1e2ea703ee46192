"""Campaigns on a Dask cluster: the executor abstraction with a `LocalCluster` on loopback.

The same seeds give the same scenarios wherever they run, so a campaign through Dask must count
exactly the scenarios and steps of the same campaign run locally.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from hugetlbsim.fuzz.cli import fuzz

distributed = pytest.importorskip("distributed", reason="needs the dask extra")


def _summary(output: str) -> tuple[int, int, int]:
    match = re.search(r"(\d+) scenarios, (\d+) steps in .* (\d+) divergences", output)
    assert match, output
    return int(match[1]), int(match[2]), int(match[3])


def test_dask_campaign_equals_local(tmp_path: object) -> None:
    args = ["--against", "policies", "--seed", "4242", "--count", "40", "--jobs", "1",
            "--out", str(tmp_path)]
    local = CliRunner().invoke(fuzz, args)
    assert local.exit_code == 0, local.output
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        remote = CliRunner().invoke(fuzz, [*args[:-2], "--executor", "dask", "--scheduler",
                                           cluster.scheduler_address, "--out", str(tmp_path)])
    assert remote.exit_code == 0, remote.output
    assert _summary(remote.stdout) == _summary(local.stdout)
    assert _summary(local.stdout)[:1] == (40,)


def test_dask_needs_a_scheduler() -> None:
    result = CliRunner().invoke(fuzz, ["--executor", "dask", "--count", "1"])
    assert result.exit_code == 2
    assert "--executor dask needs --scheduler" in result.output
