"""The command line through click's CliRunner, with fake backends in `cli.BACKENDS`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_runner import SCENARIO, FakeBackend

from hugetlbsim import cli
from hugetlbsim.backends.base import Backend, BackendUnavailable
from hugetlbsim.format.loader import load_text
from hugetlbsim.runner import run

Install = Callable[..., None]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Install:
    """Replace a backend factory by one making ``FakeBackend(name, **options)``."""

    def install(name: str, **options: object) -> None:
        def factory(policy: str, line: str | None = None) -> Backend:
            if options.get("unavailable"):
                raise BackendUnavailable("needs root\nand more")
            backend = FakeBackend(name, **options)  # type: ignore[arg-type]
            backend.policy = policy  # type: ignore[attr-defined]
            backend.line = line  # type: ignore[attr-defined]
            made.append(backend)
            return backend

        monkeypatch.setitem(cli.BACKENDS, name, factory)

    made: list[FakeBackend] = []
    install.made = made  # type: ignore[attr-defined]
    install("model")
    install("kernel")
    return install


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(SCENARIO)
    return path


def test_run_table(install: Install, toy: Path) -> None:
    result = invoke("run", str(toy))
    assert result.exit_code == 0, result.output
    assert "toy on model 6.18" in result.stdout
    assert "mmap proc=p map=m anon=true length=4" in result.stdout
    assert "root: usage 0→2 rsvd 4→2" in result.stdout
    assert "not enough free pages to reserve" in result.stdout
    assert result.stderr == ""


def test_run_json_is_the_trace(install: Install, toy: Path) -> None:
    result = invoke("run", "--json", "--policy", "v7", str(toy))
    assert result.exit_code == 0
    assert json.loads(result.stdout) == run(load_text(SCENARIO, str(toy)), FakeBackend()).to_json()
    assert install.made[0].policy == "v7"  # type: ignore[attr-defined]


def test_run_failed_expectation(install: Install, toy: Path) -> None:
    toy.write_text(SCENARIO.replace("rsvd: 2, free: 6", "rsvd: 3, free: 6"))
    result = invoke("run", str(toy))
    assert result.exit_code == 1
    assert "rsvd: expected 3, got 2" in result.stdout
    assert result.stderr == f"{toy}:8: step 2: rsvd expected 3, got 2\n"
    result = invoke("run", "--json", str(toy))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["steps"][2]["state"]["rsvd"] == 2


def test_run_scenario_error(install: Install, toy: Path) -> None:
    toy.write_text(SCENARIO.replace("touch:", "tuch:"))
    result = invoke("run", str(toy))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (f"{toy}:8:5: unknown operation 'tuch'; did you mean 'touch'?\n")


def test_run_missing_file(install: Install, tmp_path: Path) -> None:
    result = invoke("run", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{tmp_path / 'nope.yaml'}:1:1: cannot read the file")


def test_run_backend_unavailable(install: Install, toy: Path) -> None:
    install("kernel", unavailable=True)
    result = invoke("run", "--backend", "kernel", str(toy))
    assert result.exit_code == 3
    assert result.stderr == "backend unavailable: needs root and more\n"


def test_internal_error_is_one_line_unless_debug(install: Install, toy: Path) -> None:
    install("model", crash_on=("touch",))
    result = invoke("run", str(toy))
    assert result.exit_code == 4
    assert result.stderr == ("internal error: RuntimeError: the fake cannot touch second line "
                             "(run 'hugetlbsim --debug ...' for the traceback)\n")
    result = invoke("--debug", "run", str(toy))
    assert isinstance(result.exception, RuntimeError)


def test_diff_same(install: Install, toy: Path) -> None:
    result = invoke("diff", str(toy))
    assert result.exit_code == 0
    assert result.stdout == f"{toy}: same\n1 scenario: 1 same, 0 differ\n"
    made = {b.name: b for b in install.made}  # type: ignore[attr-defined]
    assert sorted(made) == ["kernel", "model"]
    assert made["model"].line == "6.18.44"  # the model follows the kernel it is compared with
    assert made["kernel"].line is None


def test_diff_divergence_side_by_side(install: Install, toy: Path, tmp_path: Path) -> None:
    install("kernel", skew=1)
    other = tmp_path / "other.yaml"
    other.write_text(SCENARIO)
    result = invoke("diff", "--steps", "1", str(toy), str(other))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{toy}: differs from step 0 (line 5), 4 steps in all"
    assert "model" in lines[2] and "kernel" in lines[2]
    assert "spawn proc=p" in result.stdout
    assert "mmap" not in result.stdout, "--steps 1 shows one step"
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines
            if line.startswith("│")]
    assert rows[0] == ["0", "spawn proc=p", "rsvd", "0", "1"]
    assert lines[-1] == "2 scenarios: 0 same, 2 differ"


def test_diff_goes_on_after_a_scenario_error(install: Install, toy: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("format: 1\nsteps:\n  - exit: {proc: p}\n")
    result = invoke("diff", str(broken), str(toy))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"{broken}:3:")
    assert result.stdout.splitlines()[-1] == "2 scenarios: 1 same, 0 differ, 1 could not run"


def test_diff_kernel_unavailable(install: Install, toy: Path) -> None:
    install("kernel", unavailable=True)
    assert invoke("diff", str(toy)).exit_code == 3


RECORD = """\
format: 1
pool: {pages: 8}   # eight pages
steps:
# the process
- spawn: {proc: p}
- mmap: {proc: p, map: m, anon: true, length: 4}
  expect: {result: ENOMEM, free: 0x8, cgroup: {root: {limit: null, usage: 7}, gone: {usage: 1}}}
- touch: {proc: p, map: m, page: 0, count: 2}
  expect:
    rsvd: 9   # was wrong
"""

RECORDED = """\
format: 1
pool: {pages: 8}   # eight pages
kernel: "6.18.44-fake"
steps:
# the process
- spawn: {proc: p}
  expect:
    result: ok
    total: 8
    free: 8
    rsvd: 0
    surp: 0
    nr_hugepages: 8
    cgroup:
      root: {usage: 0, rsvd: 0, failcnt: 0, rsvd_failcnt: 0}
    mount:
      sized: {free: 3}
    file:
      hp/f: {blocks: 0, size: 4}
- mmap: {proc: p, map: m, anon: true, length: 4}
  expect:
    result: ok
    total: 8
    free: 0x8
    rsvd: 4
    surp: 0
    nr_hugepages: 8
    cgroup:
      root: {usage: 0, rsvd: 4, failcnt: 0, rsvd_failcnt: 0, limit: null}
    mount:
      sized: {free: 3}
    file:
      hp/f: {blocks: 0, size: 4}
- touch: {proc: p, map: m, page: 0, count: 2}
  expect:
    result: ok
    total: 8
    free: 6
    rsvd: 2   # was wrong
    surp: 0
    nr_hugepages: 8
    cgroup:
      root: {usage: 2, rsvd: 2, failcnt: 0, rsvd_failcnt: 0}
    mount:
      sized: {free: 3}
    file:
      hp/f: {blocks: 0, size: 4}
"""


def test_record_writes_kernel_values_keeping_comments(install: Install, tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text(RECORD)
    path.chmod(0o640)
    result = invoke("record", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{path}: recorded 3 steps from kernel 6.18.44-fake\n"
    assert path.read_text() == RECORDED
    assert os.listdir(tmp_path) == ["rec.yaml"]
    assert path.stat().st_mode & 0o777 == 0o640
    assert [b.name for b in install.made] == ["kernel"]  # type: ignore[attr-defined]
    assert invoke("run", str(path)).exit_code == 0, "the model fake agrees with the kernel fake"


def test_record_keeps_the_list_indentation(install: Install, tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("format: 1\nsteps:\n    -   spawn: {proc: p}\n")
    assert invoke("record", str(path)).exit_code == 0
    assert path.read_text().startswith("format: 1\nkernel: \"6.18.44-fake\"\nsteps:\n"
                                       "    -   spawn: {proc: p}\n"
                                       "        expect:\n          result: ok\n")


@pytest.mark.parametrize(("text", "unavailable", "status"), [
    ("format: 1\nsteps:\n- exit: {proc: p}\n", False, 2),
    (RECORD, True, 3),
])
def test_record_leaves_the_file_alone_on_errors(install: Install, tmp_path: Path, text: str,
                                                unavailable: bool, status: int) -> None:
    install("kernel", unavailable=unavailable)
    path = tmp_path / "rec.yaml"
    path.write_text(text)
    assert invoke("record", str(path)).exit_code == status
    assert path.read_text() == text
    assert os.listdir(tmp_path) == ["rec.yaml"]


# -- honest exit codes and options that do not apply (issue: hardening) --------------------

def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, toy: Path) -> None:
    """Ctrl-C is not a failed expectation (1): it is 128 + SIGINT, as a shell reports it."""

    class Interrupted:
        name = "model"

        def version(self) -> str:
            return "6.18"

        def open(self, scenario: object) -> None:
            raise KeyboardInterrupt

    monkeypatch.setitem(cli.BACKENDS, "model", lambda policy, line=None: Interrupted())
    result = invoke("run", str(toy))
    assert result.exit_code == 130
    assert result.stderr == "interrupted\n"


def test_policy_and_kernel_refused_for_the_kernel_backend(install: Install, toy: Path) -> None:
    for option, value in (("--policy", "v7"), ("--kernel", "6.1")):
        result = invoke("run", str(toy), "--backend", "kernel", option, value)
        assert result.exit_code == 2
        assert f"{option} applies to the model only, not to --backend kernel" in result.stderr
    assert install.made == []  # type: ignore[attr-defined]


def test_unknown_kernel_line(install: Install, toy: Path) -> None:
    result = invoke("run", str(toy), "--kernel", "5.10")
    assert result.exit_code == 2
    assert "does not follow kernel line 5.10" in result.stderr


def test_model_follows_the_kernel_option(install: Install, toy: Path) -> None:
    invoke("run", str(toy), "--kernel", "6.1.170")
    assert [(b.name, b.line) for b in install.made] == [  # type: ignore[attr-defined]
        ("model", "6.1.170")]


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "1e400"])
def test_bad_lock_timeout(monkeypatch: pytest.MonkeyPatch, toy: Path, value: str) -> None:
    monkeypatch.setenv("HUGETLBSIM_LOCK_TIMEOUT", value)
    result = invoke("run", str(toy), "--backend", "kernel")
    assert result.exit_code == 2
    assert "HUGETLBSIM_LOCK_TIMEOUT" in result.stderr and "Traceback" not in result.output


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                 toy: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = invoke("plot", str(toy), "-o", "x.png")
    assert result.exit_code == 3
    assert "pip install 'hugetlbsim[plot]'" in result.stderr


def test_regions_of_a_file_not_in_the_scenario(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("format: 1\nsteps:\n  - mount: {name: hp}\n  - create: {file: hp/f}\n")
    result = invoke("regions", str(path), "--file", "hp/g")
    assert result.exit_code == 2
    assert "no step of" in result.stderr and "'hp/g'" in result.stderr
    assert invoke("regions", str(path), "--file", "hp/f").exit_code == 0


def test_diff_goes_on_after_an_internal_error(install: Install, toy: Path,
                                              tmp_path: Path) -> None:
    """One scenario that crashes a backend is reported; the batch goes on."""
    install("kernel", crash_on=("touch",))
    other = tmp_path / "other.yaml"
    other.write_text("format: 1\nsteps:\n  - spawn: {proc: p}\n")
    result = invoke("diff", str(toy), str(other))
    assert result.exit_code == 2
    assert f"{toy}: internal error: RuntimeError" in result.stderr
    assert result.stdout.splitlines()[-1] == "2 scenarios: 1 same, 0 differ, 1 could not run"
