"""The kernel matrix with fake kernels: where kernels differ, and whether the model follows."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runner import SCENARIO, FakeBackend

from hugetlbsim import cli
from hugetlbsim.format.loader import load_text
from hugetlbsim.views.matrix import Column, markdown, matrix, page


def test_kernels_agree_and_the_model_follows() -> None:
    scenario = load_text(SCENARIO)
    a, b = FakeBackend("kernel"), FakeBackend("kernel")
    result = matrix([("toy", scenario)], [Column("a", a, FakeBackend("model")),
                                          Column("b", b, FakeBackend("model"))])
    (row,) = result.rows
    assert not row.kernels_differ and row.model == ["same", "same"]
    assert result.summary() == ("1 scenarios on 2 kernels: the kernels differ on 0; the model "
                                "follows a on 1/1, b on 1/1")


def test_first_difference_names_the_step_counter_and_each_value() -> None:
    """Kernel b's Rsvd is one higher after every step (skew 1): the first step differs."""
    scenario = load_text(SCENARIO)
    columns = [Column("a", FakeBackend("kernel"), FakeBackend("model")),
               Column("b", FakeBackend("kernel", skew=1), FakeBackend("model"))]
    (row,) = matrix([("toy", scenario)], columns).rows
    assert row.first is not None and row.first.index == 0
    assert row.values["rsvd"] == ["0", "1"]
    assert row.model[0] == "same" and row.model[1].startswith("differs from step 0")


def test_a_kernel_that_cannot_run_a_scenario_is_a_cell() -> None:
    scenario = load_text(SCENARIO)
    columns = [Column("a", FakeBackend("kernel")),
               Column("b", FakeBackend("kernel", crash_on=("touch",)))]
    result = matrix([("toy", scenario)], columns)
    (row,) = result.rows
    assert isinstance(row.traces[1], str) and "RuntimeError" in row.traces[1]
    assert not row.kernels_differ
    assert "could not run" in markdown(result) and "<table>" in page(result)


def test_matrix_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made: dict[str, FakeBackend] = {}

    def factory(policy: str, line: str | None = None) -> FakeBackend:
        backend = FakeBackend("model" if line is not None else "kernel")
        made[line or "kernel"] = backend
        return backend

    monkeypatch.setitem(cli.BACKENDS, "kernel", factory)
    monkeypatch.setitem(cli.BACKENDS, "model", factory)
    path = tmp_path / "toy.yaml"
    path.write_text(SCENARIO)
    report = tmp_path / "m.md"
    result = CliRunner().invoke(cli.main, ["matrix", str(path), "--kernels", "kernel",
                                           "--markdown", str(report)])
    assert result.exit_code == 0, result.output
    assert "6.18.44" in made  # the model follows the kernel's release
    assert report.read_text().startswith("# Kernel matrix\n\n1 scenarios on 1 kernels")
    bad = CliRunner().invoke(cli.main, ["matrix", str(path), "--kernels", "kernel,nope"])
    assert bad.exit_code == 2 and "'nope' is not a backend" in bad.output
