"""``hugetlbsim fuzz``: a campaign with a progress bar, shrunk divergences saved to a folder.

Progress goes to stderr (scenarios/s, steps, divergences, scenarios not run on the kernel
because the model predicts they would leave it non-idle); the summary goes to stdout.  Exit
status 1 if anything diverged, 130 when interrupted (after the scenarios under way finish).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hugetlbsim.fuzz.campaign import (
    MODES,
    BatchResult,
    Finding,
    Mode,
    Options,
    Summary,
    campaign,
    ignore_sigint,
    is_mode,
    memcg_refused,
)
from hugetlbsim.fuzz.generate import WEIGHTS, GenOptions

__all__ = ["DEFAULT_COUNT", "dask_executor", "fuzz", "save", "summary_table"]

DEFAULT_COUNT = 1000
T = TypeVar("T")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Dask(Executor):
    """A Dask client's executor that closes the client when shut down."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._inner: Executor = client.get_executor()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait)
        self._client.close()


def dask_executor(address: str) -> Executor:
    """A `concurrent.futures.Executor` over a Dask cluster: each worker runs whole batches
    (a kernel campaign wants one single-threaded worker per machine, each booting or driving
    its own kernel); needs the ``dask`` extra."""
    try:
        from distributed import Client
    except ImportError:
        raise click.UsageError("--executor dask needs dask.distributed: "
                               "pip install 'hugetlbsim[dask]'") from None
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise click.UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    return _Dask(client)


def _check_mode(value: str) -> str:
    if not is_mode(value):
        raise click.BadParameter(f"{value!r}: use {', '.join(MODES)} or vm:LINE (vm:6.1, "
                                 "vm:6.12)")
    if value.startswith("vm:"):
        from hugetlbsim.backends.vm.backend import parse_spec

        try:
            parse_spec(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def save(out: Path, finding: Finding) -> Path:
    """Write a shrunk finding as ``OUT/MODE-seed-SEED.yaml``; the folder ignores itself in git."""
    assert finding.shrunk is not None
    out.mkdir(parents=True, exist_ok=True)
    ignore = out / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# hugetlbsim fuzz output\n*\n", encoding="utf-8")
    path = out / f"{finding.mode.replace(':', '-')}-seed-{finding.seed}.yaml"
    path.write_text(finding.shrunk, encoding="utf-8")
    return path


def summary_table(summary: Summary, saved: dict[int, Path]) -> Table:
    """One row per kind of divergence: how often, first seeds, the saved shrunk scenario."""
    table = Table(title=f"{len(summary.findings)} divergences")
    for name in ("signature", "count", "seeds", "shrunk", "saved"):
        table.add_column(name, justify="right" if name in ("count", "shrunk") else "left")
    for signature, group in summary.by_signature().items():
        first = group[0]
        shrunk = "-" if first.shrunk is None else (
            f"{first.steps}→{first.shrunk_steps}" if first.reproduced else "flaky")
        seeds = ", ".join(str(f.seed) for f in group[:5]) + (", ..." if len(group) > 5 else "")
        table.add_row(signature, str(len(group)), seeds, shrunk,
                      str(saved.get(first.seed, "-")))
    return table


@click.command("fuzz")
@click.option("--seed", type=int, default=None,
              help="First seed; scenarios use seed, seed+1, ... [default: random, printed]")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help=f"Scenarios to run [default: {DEFAULT_COUNT}].")
@click.option("--time", "seconds", type=click.FloatRange(min=0), default=None,
              help="Run for this many seconds instead of a count.")
@click.option("--against", "mode", default="policies", show_default=True,
              callback=lambda ctx, param, value: _check_mode(value),
              help="policies: model 6.18 against v7; kernel: model against this machine; "
                   "vm:LINE: the model at a guest kernel's point against that kernel in qemu.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes for policies runs [default: CPUs]; kernel runs are serial.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fuzz-out"), show_default=True,
              help="Where shrunk divergences are saved.")
@click.option("--focus", multiple=True, type=click.Choice(sorted(WEIGHTS)),
              help="Weight the generator towards these actions (repeatable).")
@click.option("--per-signature", type=click.IntRange(min=0), default=1, show_default=True,
              help="Divergences of one kind shrunk and saved (the rest are counted).")
@click.option("--executor", "executor_name", type=click.Choice(["local", "dask"]),
              default="local", show_default=True,
              help="Where batches run: local processes, or a Dask cluster (--scheduler).")
@click.option("--scheduler", default=None,
              help="The Dask scheduler's address (tcp://HOST:PORT) for --executor dask.")
@click.option("--cgroups", "interface", type=click.Choice(["mixed", "v1", "v2"]),
              default="mixed", show_default=True,
              help="The hugetlb cgroup interface of the scenarios (mixed: half of them v2).")
@click.option("--memcg", "memcg", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Share of the v2 scenarios with memory_accounting: true (hugetlb pages "
                   "charged to memcg); needs a side at 6.7 or later: policies or vm:6.12.")
@click.pass_context
def fuzz(ctx: click.Context, seed: int | None, count: int | None, seconds: float | None,
         mode: Mode, jobs: int | None, out: Path, focus: tuple[str, ...],
         per_signature: int, executor_name: str, scheduler: str | None,
         interface: str = "mixed", memcg: float = 0.0) -> None:
    """Run generated scenarios on two sides and shrink every divergence; exit 1 if any."""
    if count is not None and seconds is not None:
        raise click.UsageError("give --count or --time, not both")
    serial = mode != "policies"
    if serial and jobs not in (None, 1):
        raise click.UsageError("runs on a real kernel are serial (its counters are global); "
                               "drop --jobs")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    if count is None and seconds is None:
        count = DEFAULT_COUNT
    jobs = jobs or os.cpu_count() or 1
    err = Console(stderr=True, highlight=False)
    err.print(f"fuzz --against {mode} --seed {seed} "
              + (f"--count {count}" if count is not None else f"--time {seconds:g}")
              + (f" --jobs {jobs}" if mode == "policies" else "")
              + (f" --cgroups {interface}" if interface != "mixed" else "")
              + (f" --memcg {memcg:g}" if memcg else ""), markup=False)
    options = Options(gen=GenOptions(focus=focus, cgroups=interface, memory_accounting=memcg),
                      shrink=per_signature > 0)
    if memcg > 0:
        why = "it needs cgroup v2" if interface == "v1" else memcg_refused(mode, options)
        if why is not None:
            raise click.UsageError(f"--memcg {memcg:g} against {mode}: {why}")
    if (executor_name == "dask") != (scheduler is not None):
        raise click.UsageError("--executor dask needs --scheduler ADDRESS, and only it takes one")
    executor: Executor
    if scheduler is not None:
        executor = dask_executor(scheduler)
    elif serial:
        executor = ThreadPoolExecutor(max_workers=1)
    else:
        executor = ProcessPoolExecutor(max_workers=jobs, initializer=ignore_sigint)
    batch, in_flight = {"policies": (100, 2 * jobs), "kernel": (1, 2)}.get(mode, (50, 1))
    saved: dict[int, Path] = {}
    per_kind: dict[str, int] = {}
    state = Summary()
    progress = Progress(
        TextColumn("fuzz {task.description}"), BarColumn(),
        TextColumn("{task.fields[done]} scenarios  {task.fields[rate]:.0f}/s  "
                   "{task.fields[steps]} steps  [bold]{task.fields[found]} divergences"
                   "[/bold]  {task.fields[unsafe]} unsafe"),
        TimeElapsedColumn(), console=err)
    task = progress.add_task(mode, total=count if count is not None else seconds, done=0,
                             rate=0.0, steps=0, found=0, unsafe=0)

    def on_result(summary: Summary, result: BatchResult) -> None:
        nonlocal state
        state = summary
        for finding in result.findings:
            if finding.shrunk is None or per_kind.get(finding.signature, 0) >= per_signature:
                continue
            per_kind[finding.signature] = per_kind.get(finding.signature, 0) + 1
            saved[finding.seed] = save(out, finding)
            how = (f"{finding.steps}→{finding.shrunk_steps} steps" if finding.reproduced
                   else "flaky: did not diverge again")
            progress.console.print(f"seed {finding.seed}: {finding.signature} ({how}) "
                                   f"→ {saved[finding.seed]}", markup=False)
        progress.update(task, completed=summary.scenarios if count is not None
                        else summary.elapsed, done=summary.scenarios, steps=summary.steps,
                        found=len(summary.findings), unsafe=len(summary.unsafe),
                        rate=summary.scenarios / max(summary.elapsed, 1e-9))

    interrupted = False
    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        with executor, progress:
            campaign(mode, executor, seed=seed, count=count, seconds=seconds, batch=batch,
                     in_flight=in_flight, options=options, on_result=on_result)
    except KeyboardInterrupt:
        err.print("interrupted: the scenarios under way finished; summary so far")
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old)
    out_console = Console(width=160) if not Console().is_terminal else Console()
    rate = state.scenarios / max(state.elapsed, 1e-9)
    out_console.print(f"{state.scenarios} scenarios, {state.steps} steps in "
                      f"{state.elapsed:.1f} s ({rate:.0f} scenarios/s), seed {seed}, "
                      f"against {mode}: {len(state.findings)} divergences", highlight=False)
    if state.findings:
        out_console.print(summary_table(state, saved))
    for seed_, why in state.unsafe:
        out_console.print(f"seed {seed_}: not run on the kernel: {why}", highlight=False)
    if interrupted:
        ctx.exit(130)
    if state.findings:
        ctx.exit(1)
