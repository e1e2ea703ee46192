"""The ``hugetlbsim`` command: run a scenario, diff model against kernel, record kernel values.

Data goes to stdout, progress and messages to stderr.  Exit status: 0 all well, 1 an
expectation failed or model and kernel differ, 2 a scenario error, 3 a backend cannot run
here, 4 an internal error (one line; ``hugetlbsim --debug ...`` shows the traceback).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from hugetlbsim.backends.base import (
    Backend,
    BackendFailed,
    BackendUnavailable,
    ScenarioRefused,
    prepare,
)
from hugetlbsim.format.loader import ScenarioError, load
from hugetlbsim.format.scenario import Scenario
from hugetlbsim.model.kernels import UnknownKernel, kernel
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.model.system import SYSTEM_POLICIES
from hugetlbsim.record import record_file
from hugetlbsim.runner import run
from hugetlbsim.trace import JsonStream, compare
from hugetlbsim.views.table import diff_table, trace_table

__all__ = ["main"]

EXIT_FAILED, EXIT_SCENARIO, EXIT_UNAVAILABLE, EXIT_INTERNAL = 1, 2, 3, 4
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command ended by Ctrl-C."""


def lock_timeout() -> float:
    """$HUGETLBSIM_LOCK_TIMEOUT: seconds to wait for another kernel session (default 60)."""
    raw = os.environ.get("HUGETLBSIM_LOCK_TIMEOUT", "60")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise click.UsageError(f"HUGETLBSIM_LOCK_TIMEOUT={raw[:40]!r} is not a number of "
                               "seconds; set it to e.g. 60, or unset it")
    return value


def _model(policy: Policy, line: str | None) -> Backend:
    from hugetlbsim.backends.model import ModelBackend

    return ModelBackend(policy, line)


def _kernel(policy: Policy, line: str | None) -> Backend:
    from hugetlbsim.backends.kernel import KernelBackend

    return KernelBackend(lock_timeout=lock_timeout())


BACKENDS: dict[str, Callable[[Policy, str | None], Backend]] = {
    "model": _model, "kernel": _kernel}
"""Backend name → factory taking the model's policy and kernel line (imported lazily: the
kernel backend needs the live system only when it is used)."""


def make_backend(name: str, policy: Policy | None, line: str | None = None) -> Backend:
    """The backend called ``name`` (``model``, ``kernel``, or a ``vm:`` spec); ``policy`` and
    ``line`` choose the model's region policy and kernel line (None: the defaults), and naming
    one for another backend is a usage error, not silently ignored."""
    if name != "model":
        for option, value in (("--policy", policy), ("--kernel", line)):
            if value is not None:
                raise click.UsageError(f"{option} applies to the model only, not to "
                                       f"--backend {name}")
    if name in BACKENDS:
        return BACKENDS[name](policy or SYSTEM_POLICIES[0], line)
    from hugetlbsim.backends.vm.backend import backend_from_spec, parse_spec

    try:
        parse_spec(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--backend") from None
    err = _err()
    return backend_from_spec(name, log=lambda text: err.print(text, style="dim", markup=False))


def _check_backend(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value not in BACKENDS and not value.startswith("vm"):
        raise click.BadParameter(f"{value!r} is not a backend: use model, kernel or vm:LINE "
                                 "(vm:6.1, vm:6.12, vm:6.1.0-57-cloud-amd64)")
    return value


def _check_line(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            kernel(value)
        except UnknownKernel as exc:
            raise click.BadParameter(str(exc)) from None
    return value


class _Main(click.Group):
    """Turns the known failures into their exit status and a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except (KeyboardInterrupt, click.Abort):
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EXIT_SCENARIO)
        except BackendUnavailable as exc:
            click.echo(f"backend unavailable: {_one_line(exc)}", err=True)
            ctx.exit(EXIT_UNAVAILABLE)
        except BackendFailed as exc:
            click.echo(f"backend failed: {_one_line(exc)}", err=True)
            ctx.exit(EXIT_UNAVAILABLE)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {_one_line(exc)} "
                       "(run 'hugetlbsim --debug ...' for the traceback)", err=True)
            ctx.exit(EXIT_INTERNAL)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@click.group(cls=_Main)
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def main(debug: bool) -> None:
    """An executable model of Linux HugeTLB reservation accounting."""
    # Each step's state is thousands of small lists that die at the next step; the default
    # thresholds collect every 700 allocations and keep promoting the live state, so full
    # collections walk it again and again (a 4 000-region file: 7.9 s -> 4.4 s for the run).
    gc.set_threshold(100_000, 50, 100)


def _out() -> Console:
    """Rich output on stdout; wide when it is not a terminal, so tables do not wrap."""
    console = Console()
    if not console.is_terminal:
        console.width = 160
    return console


def _err() -> Console:
    return Console(stderr=True, highlight=False)


_backend_option = click.option(
    "--backend", default="model", show_default=True, callback=_check_backend,
    help="model, kernel (this machine) or vm:LINE (a Debian kernel in a qemu guest: vm:6.1, "
         "vm:6.12, vm:6.1.0-57-cloud-amd64; see 'hugetlbsim kernels').")
_reference_option = click.option(
    "--backend", "reference_name", default="kernel", show_default=True,
    callback=_check_backend, help="The real kernel to compare with: kernel (this machine) or "
                                  "vm:LINE.")
_kernel_option = click.option(
    "--kernel", "line", default=None, callback=_check_line,
    help="The kernel line the model follows: 6.1, 6.12, 6.18, a release (6.1.192) or a "
         "uname -r (default: the scenario's kernel:, else 6.18).")
_policy_option = click.option("--policy", type=click.Choice(SYSTEM_POLICIES), default=None,
                              help=f"The model's reservation-map policy (default "
                                   f"{SYSTEM_POLICIES[0]}).")


@main.command("run")
@click.argument("file", type=click.Path())
@_backend_option
@_policy_option
@_kernel_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON trace.")
@click.pass_context
def run_command(ctx: click.Context, file: str, backend: str, policy: Policy | None,
                line: str | None, as_json: bool) -> None:
    """Run a scenario; exit 1 if an expectation fails."""
    scenario = load(file)
    if as_json:  # streamed: each step is written as it is run, then dropped
        out = sys.stdout
        stream = JsonStream(out)
        trace = run(scenario, make_backend(backend, policy, line), on_step=stream.step,
                    keep=False)
        stream.end(trace)
        out.write("\n")
        out.flush()
    else:
        trace = run(scenario, make_backend(backend, policy, line))
        _out().print(trace_table(trace))
    for failure in trace.failures:
        click.echo(f"{scenario.path}:{failure.line}: {failure}", err=True)
    if trace.failures:
        ctx.exit(EXIT_FAILED)


@main.command("diff")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@_reference_option
@_policy_option
@_kernel_option
@click.option("--watermarks", is_flag=True, help="Also compare max_usage and rsvd_max_usage.")
@click.option("--steps", "max_steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="Differing steps shown per scenario.")
@click.pass_context
def diff_command(ctx: click.Context, files: Sequence[str], reference_name: str,
                 policy: Policy | None, line: str | None, watermarks: bool,
                 max_steps: int) -> None:
    """Run scenarios on the model and the kernel; exit 1 if any differ (2 if one cannot load).

    The model follows the kernel it is compared with, unless --kernel names another line.
    """
    reference = make_backend(reference_name, None)
    model = make_backend("model", policy, line or _line_of(reference))
    out, err = _out(), _err()
    same = differ = broken = refused = 0
    loaded: dict[str, Scenario] = {}
    for file in files:
        try:
            loaded[file] = load(file)
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            broken += 1
    prepare(reference, list(loaded.values()))
    for file, scenario in loaded.items():
        err.print(f"running {file}", style="dim", markup=False)
        try:
            diffs = compare(run(scenario, model), run(scenario, reference),
                            watermarks=watermarks)
        except ScenarioRefused as exc:  # this one cannot run here; the others can
            out.print(f"{file}: not run: {_one_line(exc)}", highlight=False, markup=False)
            refused += 1
            continue
        except (KeyboardInterrupt, BackendUnavailable):
            raise
        except Exception as exc:
            click.echo(f"{file}: internal error: {type(exc).__name__}: {_one_line(exc)}",
                       err=True)
            broken += 1
            continue
        if not diffs:
            same += 1
            out.print(f"{file}: same", highlight=False, markup=False)
            continue
        differ += 1
        first = diffs[0]
        out.print(f"{file}: differs from step {first.index} (line {first.line}), "
                  f"{len(diffs)} steps in all", style="bold red", highlight=False, markup=False)
        out.print(diff_table(diffs[:max_steps]))
    summary = f"{len(files)} scenario{'s' * (len(files) != 1)}: {same} same, {differ} differ"
    click.echo(summary + (f", {broken} could not run" if broken else "")
               + (f", {refused} not run (refused)" if refused else ""))
    if refused and refused == len(files):
        ctx.exit(EXIT_UNAVAILABLE)
    if broken or differ:
        ctx.exit(EXIT_SCENARIO if broken else EXIT_FAILED)


def _line_of(backend: Backend) -> str:
    """The kernel line the model follows to be compared with ``backend``."""
    try:
        return kernel(backend.version()).name
    except UnknownKernel as exc:
        raise click.UsageError(f"{exc}; name the line to compare with --kernel") from None


@main.command("record")
@click.argument("file", type=click.Path())
@_reference_option
def record_command(file: str, reference_name: str) -> None:
    """Run a scenario on a real kernel and write what it showed into the file's expect blocks
    and its ``kernel:`` key."""
    path = Path(file)
    scenario = load(path)
    trace = run(scenario, make_backend(reference_name, None))
    record_file(path, trace)
    click.echo(f"{file}: recorded {len(trace.steps)} steps from {trace.backend} {trace.kernel}",
               err=True)


# -- seeing and explaining: the work is in plot, regions_view, explain and status, imported
# when the command runs (they use the helpers above, and matplotlib is slow to import).

def _need_matplotlib() -> None:
    """Refuse clearly (exit 3) when the optional plotting dependency is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise BackendUnavailable("drawing needs matplotlib: pip install 'hugetlbsim[plot]'")


@main.command("plot")
@click.argument("file", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="A .png, .svg or .html file (default: FILE's name with .png, here).")
@_backend_option
@_policy_option
@_kernel_option
@click.option("--compare", is_flag=True,
              help="Draw the model beside a real kernel (--backend kernel, the default here, or "
                   "vm:LINE), the model at that kernel's line, divergent steps marked.")
def plot_command(file: str, output: str | None, backend: str, policy: Policy | None,
                 line: str | None, compare: bool) -> None:
    """Plot the pool and cgroup counters over the steps of a scenario."""
    _need_matplotlib()
    from hugetlbsim.views.plot import FORMATS, save

    path = output or Path(file).with_suffix(".png").name
    if Path(path).suffix not in FORMATS:
        raise click.BadParameter(f"use a name ending in {', '.join(FORMATS)}", param_hint="-o")
    scenario = load(file)
    if compare:
        reference = make_backend("kernel" if backend == "model" else backend, None)
        model = make_backend("model", policy, line or _line_of(reference))
        save([run(scenario, model), run(scenario, reference)], path)
    else:
        save([run(scenario, make_backend(backend, policy, line))], path)
    click.echo(f"wrote {path}", err=True)


@main.command("regions")
@click.argument("file", type=click.Path())
@click.option("--file", "name", required=True, help="The scenario file to show (hp/f).")
@_policy_option
@_kernel_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also draw a .png/.svg.")
def regions_command(file: str, name: str, policy: Policy | None, line: str | None,
                    output: str | None) -> None:
    """Show one file's reservation map after each step, on the model."""
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.views.regions import FORMATS, save_image, table

    if output:
        _need_matplotlib()

    if output and Path(output).suffix not in FORMATS:
        raise click.BadParameter(f"use a name ending in {', '.join(FORMATS)}", param_hint="-o")
    policy = policy or SYSTEM_POLICIES[0]
    trace = run(load(file), ModelBackend(policy, line))
    if not any(name in step.state.get("files", {}) for step in trace.steps):
        raise click.BadParameter(f"no step of {file} has a file named {name!r}",
                                 param_hint="--file")
    title = f"{trace.scenario}: reservation map of {name}, {policy} policy"
    _out().print(table(trace, name, title))
    if output:
        save_image(trace, name, title, output)
        click.echo(f"wrote {output}", err=True)


@main.command("explain")
@click.argument("file", type=click.Path())
@click.option("--step", "index", type=click.IntRange(min=0), required=True,
              help="The step's index (as run shows it).")
@_policy_option
@_kernel_option
def explain_command(file: str, index: int, policy: Policy | None, line: str | None) -> None:
    """Show a step on the model, why it failed, and every counter before and after it."""
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.views.explain import explanation, initial_state

    scenario, backend = load(file), ModelBackend(policy or SYSTEM_POLICIES[0], line)
    if index >= len(scenario.steps):
        raise click.BadParameter(f"the scenario has {len(scenario.steps)} steps (0 to "
                                 f"{len(scenario.steps) - 1})", param_hint="--step")
    trace = run(scenario, backend)
    before = trace.steps[index - 1].state if index else initial_state(backend, scenario)
    _out().print(explanation(trace, index, before))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def status_command(as_json: bool) -> None:
    """Show this machine's HugeTLB pools, hugetlbfs mounts and hugetlb cgroups (read-only)."""
    import json

    from hugetlbsim.views.status import collect, render

    status = collect()
    if as_json:
        click.echo(json.dumps(status.to_json()))
    else:
        _out().print(render(status))


# -- workloads: compositions of real programs (hugetlbsim.workloads does the work)

@main.command("workload")
@click.argument("file", type=click.Path())
@click.option("--emit", is_flag=True, help="Print the expanded scenario (YAML) instead.")
@_kernel_option
def workload_command(file: str, emit: bool, line: str | None) -> None:
    """Expand a workload composition into a scenario; run it on the model and summarise."""
    from hugetlbsim.workloads import api

    if emit:
        click.echo(api.emit_file(file, line), nl=False)
    else:
        click.echo(api.summary_file(file, line))


@main.command("plan")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--kernel", "lines", default=None,
              help="Plan on these kernel lines, comma-separated (6.1,6.12,6.18).")
@click.option("--sweep", default=None, help="Also sweep 'pool' or 'limit:POD' (needs -o).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The sweep's .png/.svg.")
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
def plan_command(files: Sequence[str], lines: str | None, sweep: str | None,
                 output: str | None, as_json: bool) -> None:
    """Plan compositions on the model: do they fit, how they fail, the pool and limits needed."""
    from hugetlbsim.workloads import api

    chosen = [x.strip() for x in lines.split(",")] if lines else [None]
    for chosen_line in chosen:
        _check_line(click.get_current_context(), click.Option(["--kernel"]), chosen_line)
    if sweep is not None:
        if output is None or len(files) != 1:
            raise click.UsageError("--sweep draws one composition: give one FILE and -o FILE.png")
        _need_matplotlib()
    click.echo(api.plan_files(files, chosen, as_json))
    if sweep is not None and output is not None:
        try:
            api.sweep_file(files[0], sweep, output, chosen[0])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sweep") from None
        click.echo(f"wrote {output}", err=True)

@main.command("matrix")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--kernels", "names", default="kernel,vm:6.1,vm:6.12", show_default=True,
              help="Real kernels, comma-separated: kernel (this machine) and vm:LINE specs.")
@click.option("--model/--no-model", default=True, show_default=True,
              help="Also run the model at each kernel's line and say whether it follows.")
@click.option("--markdown", "md", type=click.Path(dir_okay=False), help="Also write a report.")
@click.option("--html", "page_path", type=click.Path(dir_okay=False),
              help="Also write an HTML page.")
@click.pass_context
def matrix_command(ctx: click.Context, files: Sequence[str], names: str, model: bool,
                   md: str | None, page_path: str | None) -> None:
    """Run scenarios on several real kernels and show where they differ; exit 1 if the model
    does not follow a kernel, 2 if a scenario could not load."""
    from hugetlbsim.views.matrix import Column, markdown, matrix, page, table

    specs = [n.strip() for n in names.split(",") if n.strip()]
    for spec in specs:
        _check_backend(ctx, click.Option(["--kernels"]), spec)
    columns = []
    for spec in specs:
        real = make_backend(spec, None)
        label = f"{'host' if spec == 'kernel' else 'vm'} {real.version()}"
        columns.append(Column(label, real, make_backend("model", None, _line_of(real))
                              if model else None))
    scenarios, broken = [], 0
    for file in files:
        try:
            scenarios.append((file, load(file)))
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            broken += 1
    err = _err()
    result = matrix(scenarios, columns, lambda text: err.print(text, style="dim", markup=False))
    _out().print(table(result))
    if md:
        Path(md).write_text(markdown(result), encoding="utf-8")
    if page_path:
        Path(page_path).write_text(page(result), encoding="utf-8")
    if broken:
        ctx.exit(EXIT_SCENARIO)
    if model and any(m != "same" for row in result.rows for m in row.model):
        ctx.exit(EXIT_FAILED)


# -- kernel lines

@main.group("kernels", invoke_without_command=True)
@click.option("--model", "model", is_flag=True,
              help="The points the model follows and the switches each carries.")
@click.option("--available", is_flag=True, help="Also list what apt can download.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.pass_context
def kernels_command(ctx: click.Context, model: bool, available: bool, as_json: bool) -> None:
    """Kernels to run scenarios on: cached Debian kernels for vm:LINE (fetch them with
    'kernels fetch 6.1 6.12'), what apt offers (--available), the model's points (--model)."""
    if ctx.invoked_subcommand is not None:
        return
    if model:
        _model_points(as_json)
        return
    from rich.table import Table

    from hugetlbsim.backends.vm import cache as vmcache

    cached = vmcache.cached_kernels()
    offered = vmcache.available_kernels() if available else []
    if as_json:
        import json

        click.echo(json.dumps({
            "cache": str(vmcache.cache_dir()),
            "cached": [{"uname": k.uname, "package": k.package, "version": k.version,
                        "line": ".".join(map(str, k.line)), "model": kernel(k.uname).name}
                       for k in cached],
            "available": [{"package": k.package, "uname": k.uname, "cached": k.cached}
                          for k in offered]}))
        return
    grid = Table(title=f"cached kernels ({vmcache.cache_dir()})")
    for name in ("uname -r", "package version", "vm backend", "model follows"):
        grid.add_column(name)
    for k in cached:
        grid.add_row(k.uname, k.version, f"vm:{k.uname}", _model_point(k.uname))
    _out().print(grid if cached else "no kernel cached: hugetlbsim kernels fetch 6.1 6.12")
    if offered:
        more = Table(title="apt can download")
        more.add_column("package")
        more.add_column("cached")
        for a in offered:
            more.add_row(a.package, "yes" if a.cached else "-")
        _out().print(more)


def _model_point(uname: str) -> str:
    try:
        return kernel(uname).name
    except UnknownKernel:
        return "- (a line the model does not follow)"


@kernels_command.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even if cached.")
def kernels_fetch(names: Sequence[str], force: bool) -> None:
    """Download Debian kernels (6.1, 6.12, or package/uname names) into the cache."""
    from hugetlbsim.backends.vm import cache as vmcache

    err = _err()
    try:
        for k in vmcache.fetch(names, force=force,
                               log=lambda text: err.print(text, style="dim", markup=False)):
            click.echo(f"{k.uname}: cached ({k.version}); run with --backend vm:{k.uname}")
    except vmcache.FetchError as exc:
        raise BackendUnavailable(str(exc)) from None


@kernels_command.command("check")
def kernels_check() -> None:
    """Which host pieces the vm backend needs are missing, and the command that installs them;
    exit 3 if any is missing."""
    from hugetlbsim.backends.vm import cache as vmcache

    pieces = vmcache.check_host()
    for p in pieces:
        click.echo(f"{'ok' if p.present else 'MISSING':8} {p.name} ({p.package}): "
                   f"{p.needed_for}")
    command = vmcache.install_command([p for p in pieces if not p.present])
    if command:
        raise BackendUnavailable(f"install the missing pieces with: {command}")


def _model_points(as_json: bool) -> None:
    """The points the model knows and the switches each carries."""
    import json

    from rich.table import Table

    from hugetlbsim.model.kernels import model_points_table

    table = model_points_table()
    if as_json:
        click.echo(json.dumps({
            "points": [{"release": p, "aliases": table.aliases[p],
                        "switches": [s.name for s, on in zip(table.switches, table.carries[p],
                                                             strict=True) if on]}
                       for p in table.points],
            "switches": [{"name": s.name, "commit": s.commit, "subject": s.subject,
                          "mainline": ".".join(map(str, s.mainline[:2])),
                          "backports": {f"{a}.{b}": f"{a}.{b}.{n}"
                                        for (a, b), n in s.backports.items()},
                          "effect": s.effect, "confirmed": s.confirmed}
                         for s in table.switches]}))
        return
    grid = Table(title="kernel points the model follows (a line name means its newest point)")
    grid.add_column("switch (commit)")
    for point in table.points:
        names = ", ".join(table.aliases[point])
        grid.add_column(f"{point}\n({names})" if names else point, justify="center")
    for i, switch in enumerate(table.switches):
        grid.add_row(f"{switch.name} ({switch.commit})",
                     *("yes" if table.carries[p][i] else "-" for p in table.points))
    _out().print(grid)


from hugetlbsim.fuzz.cli import fuzz  # noqa: E402  (the fuzz package registers its command)

main.add_command(fuzz)
