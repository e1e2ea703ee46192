"""The ``hugetlbsim`` command: run a scenario, diff model against kernel, record kernel values.

Data goes to stdout, progress and messages to stderr.  Exit status: 0 all well, 1 an
expectation failed or model and kernel differ, 2 a scenario error, 3 a backend cannot run
here, 4 an internal error (one line; ``hugetlbsim --debug ...`` shows the traceback).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.util import load_yaml_guess_indent

from hugetlbsim.backends.base import Backend, BackendUnavailable
from hugetlbsim.format.loader import (
    SECTION_KEYS,
    ScenarioError,
    expect_node,
    load,
    short_op,
    yaml_rt,
)
from hugetlbsim.format.scenario import CGROUP_KEYS, POOL_KEYS
from hugetlbsim.model.resv_map import Policy
from hugetlbsim.model.system import SYSTEM_POLICIES
from hugetlbsim.runner import (
    ABSENT,
    WATERMARKS,
    StepDiff,
    StepRecord,
    Trace,
    compare,
    expectations,
    normalized,
    run,
    show_value,
)

EXIT_FAILED, EXIT_SCENARIO, EXIT_UNAVAILABLE, EXIT_INTERNAL = 1, 2, 3, 4


def _model(policy: Policy) -> Backend:
    from hugetlbsim.backends.model import ModelBackend

    return ModelBackend(policy)


def _kernel(policy: Policy) -> Backend:
    """The live kernel; waits for another session's lock up to $HUGETLBSIM_LOCK_TIMEOUT
    seconds (default 60)."""
    from hugetlbsim.backends.kernel import KernelBackend

    return KernelBackend(lock_timeout=float(os.environ.get("HUGETLBSIM_LOCK_TIMEOUT", "60")))


BACKENDS: dict[str, Callable[[Policy], Backend]] = {"model": _model, "kernel": _kernel}
"""Backend name → factory taking the model policy (imported lazily: the kernel backend
needs the live system only when it is used)."""

RECORDED_CGROUP_KEYS = ("usage", "rsvd", "failcnt", "rsvd_failcnt")
SHOWN_CGROUP_KEYS = tuple(k for k in CGROUP_KEYS if k not in WATERMARKS)


class _Main(click.Group):
    """Turns the known failures into their exit status and a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EXIT_SCENARIO)
        except BackendUnavailable as exc:
            click.echo(f"backend unavailable: {_one_line(exc)}", err=True)
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


def _out() -> Console:
    """Rich output on stdout; wide when it is not a terminal, so tables do not wrap."""
    console = Console()
    if not console.is_terminal:
        console.width = 160
    return console


def _err() -> Console:
    return Console(stderr=True, highlight=False)


_backend_option = click.option("--backend", type=click.Choice(sorted(BACKENDS)),
                               default="model", show_default=True)
_policy_option = click.option("--policy", type=click.Choice(SYSTEM_POLICIES),
                              default=SYSTEM_POLICIES[0],
                              show_default=True, help="The model's reservation-map policy.")


@main.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@_backend_option
@_policy_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON trace.")
@click.pass_context
def run_command(ctx: click.Context, file: str, backend: str, policy: Policy,
                as_json: bool) -> None:
    """Run a scenario; exit 1 if an expectation fails."""
    scenario = load(file)
    trace = run(scenario, BACKENDS[backend](policy))
    if as_json:
        click.echo(trace.dumps())
    else:
        _out().print(trace_table(trace))
    for failure in trace.failures:
        click.echo(f"{scenario.path}:{failure.line}: {failure}", err=True)
    if trace.failures:
        ctx.exit(EXIT_FAILED)


def trace_table(trace: Trace) -> Table:
    """One row per step: result, pool counters, changed cgroup counters, failed expectations."""
    table = Table(title=f"{trace.scenario} on {trace.backend} {trace.kernel}")
    for name in ("#", "op", "result", "Total", "Free", "Rsvd", "Surp", "cgroups", "notes"):
        table.add_column(name, justify="right" if name in ("#", "Total", "Free", "Rsvd", "Surp")
                         else "left")
    failures: dict[int, list[str]] = {}
    for failure in trace.failures:
        failures.setdefault(failure.index, []).append(
            f"{failure.key}: expected {show_value(failure.expected)}, "
            f"got {show_value(failure.actual)}")
    before: Mapping[str, Any] | None = None
    for step in trace.steps:
        cgroups = step.state.get("cgroups", {})
        notes = Text("; ".join(failures.get(step.index, [])), style="bold red")
        if step.explain and step.result != "ok":
            notes.append(("  " if notes else "") + step.explain, style="dim")
        pool = (show_value(step.state.get(k, ABSENT)) for k in ("total", "free", "rsvd", "surp"))
        table.add_row(Text(str(step.index)), Text(short_op(step.op, step.args)),
                      Text(step.result), *map(Text, pool), Text(cgroup_changes(before, cgroups)),
                      notes, style="red" if step.index in failures else None)
        before = cgroups
    return table


def cgroup_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """``a: usage 0→2 rsvd 2→1``: the counters (not watermarks) that changed, per cgroup;
    for the first step (no ``before``), the counters that are not zero."""
    parts = []
    for name, counters in after.items():
        old = None if before is None else before.get(name)
        if old is None:
            values = " ".join(f"{k}={_limit(k, v)}" for k, v in counters.items()
                              if k in SHOWN_CGROUP_KEYS and v not in (0, None))
            label = name if before is None else f"{name} (new)"
            if values or before is not None:
                parts.append(f"{label}: {values}" if values else label)
            continue
        changed = [f"{k} {_limit(k, old.get(k))}→{_limit(k, v)}" for k, v in counters.items()
                   if k in SHOWN_CGROUP_KEYS and old.get(k) != v]
        if changed:
            parts.append(f"{name}: {' '.join(changed)}")
    parts.extend(f"{name} (gone)" for name in before or {} if name not in after)
    return "\n".join(parts)


def _limit(key: str, value: Any) -> str:
    return "max" if value is None and key.endswith("limit") else show_value(value)


@main.command("diff")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_policy_option
@click.option("--watermarks", is_flag=True, help="Also compare max_usage and rsvd_max_usage.")
@click.option("--steps", "max_steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="Differing steps shown per scenario.")
@click.pass_context
def diff_command(ctx: click.Context, files: Sequence[str], policy: Policy, watermarks: bool,
                 max_steps: int) -> None:
    """Run scenarios on the model and the kernel; exit 1 if any differ (2 if one cannot load)."""
    model, kernel = BACKENDS["model"](policy), BACKENDS["kernel"](policy)
    out, err = _out(), _err()
    same = differ = broken = 0
    for file in files:
        try:
            scenario = load(file)
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            broken += 1
            continue
        err.print(f"running {file}", style="dim", markup=False)
        diffs = compare(run(scenario, model), run(scenario, kernel), watermarks=watermarks)
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
    click.echo(summary + (f", {broken} with scenario errors" if broken else ""))
    if broken or differ:
        ctx.exit(EXIT_SCENARIO if broken else EXIT_FAILED)


def diff_table(diffs: Sequence[StepDiff]) -> Table:
    """The differing values of each step, model beside kernel."""
    table = Table()
    for name in ("#", "op", "key", "model", "kernel"):
        table.add_column(name, justify="right" if name == "#" else "left")
    for step in diffs:
        for n, difference in enumerate(step.differences):
            cells = (str(step.index) if n == 0 else "", short_op(step.op, step.args) if n == 0
                     else "", difference.key, show_value(difference.a), show_value(difference.b))
            table.add_row(*map(Text, cells), end_section=n == len(step.differences) - 1)
    return table


@main.command("record")
@click.argument("file", type=click.Path(dir_okay=False))
def record_command(file: str) -> None:
    """Run a scenario on the kernel and write what it showed into the file's expect blocks."""
    path = Path(file)
    scenario = load(path)
    trace = run(scenario, BACKENDS["kernel"](SYSTEM_POLICIES[0]))
    doc, indent, block_seq_indent = load_yaml_guess_indent(path.read_text(encoding="utf-8"))
    for item, step in zip(doc["steps"] or (), trace.steps, strict=True):
        fresh = expect_node(recorded_expect(step, item.get("expect")))
        old = item.get("expect")
        if isinstance(old, CommentedMap):
            for node in (old, *(old[k] for k in SECTION_KEYS
                                if isinstance(old.get(k), CommentedMap))):
                node.fa.set_block_style()  # record adds many keys: one a line, as expect_node
            merge_expect(old, fresh)
        else:
            item["expect"] = fresh
    yaml = yaml_rt()
    yaml.indent(mapping=2, sequence=indent or 4,
                offset=2 if block_seq_indent is None else block_seq_indent)
    output = StringIO()
    yaml.dump(doc, output)
    write_atomically(path, output.getvalue())
    click.echo(f"{file}: recorded {len(trace.steps)} steps from {trace.backend} {trace.kernel}",
               err=True)


def recorded_expect(step: StepRecord, existing: Any) -> dict[str, Any]:
    """What ``record`` writes for a step: result, pool, cgroup, mount and file counters (no
    watermarks), plus any other counter the existing block checks, at its observed value."""
    state = step.state
    expect: dict[str, Any] = {"result": step.result, **{k: state[k] for k in POOL_KEYS
                                                        if k in state}}
    sections = {
        "cgroup": {name: _pick(c, RECORDED_CGROUP_KEYS)
                   for name, c in state.get("cgroups", {}).items()},
        "mount": {name: {"free": c["free"]}
                  for name, c in state.get("mounts", {}).items() if c.get("free") is not None},
        "file": {name: _pick(c, SECTION_KEYS["file"])
                 for name, c in state.get("files", {}).items()},
    }
    expect.update({section: values for section, values in sections.items() if values})
    if isinstance(existing, Mapping):
        for path, _ in expectations(existing):
            value = step.observed(path)
            if value is not ABSENT and len(path) == 3:
                expect.setdefault(path[0], {}).setdefault(path[1], {}).setdefault(path[2], value)
    return expect


def _pick(counters: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: counters[k] for k in keys if k in counters}


def merge_expect(node: CommentedMap, fresh: Mapping[str, Any]) -> None:
    """Make ``node`` hold ``fresh``'s values in ``fresh``'s order, in place: comments stay with
    their keys, and equal values keep their spelling (``max`` for null, hex...)."""
    for key in [k for k in node if k not in fresh]:
        del node[key]
    for key, value in fresh.items():
        old = node.get(key)
        if isinstance(value, Mapping) and isinstance(old, CommentedMap):
            merge_expect(old, value)
        elif key not in node or isinstance(value, Mapping) or normalized(old) != normalized(value):
            node[key] = value
        node.move_to_end(key)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- seeing and explaining: the work is in plot, regions_view, explain and status, imported
# when the command runs (they use the helpers above, and matplotlib is slow to import).

@main.command("plot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="A .png, .svg or .html file (default: FILE's name with .png, here).")
@_backend_option
@_policy_option
@click.option("--compare", is_flag=True,
              help="Draw model and kernel together, divergent steps marked (no --backend).")
def plot_command(file: str, output: str | None, backend: str, policy: Policy,
                 compare: bool) -> None:
    """Plot the pool and cgroup counters over the steps of a scenario."""
    from hugetlbsim.views.plot import FORMATS, save

    path = output or Path(file).with_suffix(".png").name
    if Path(path).suffix not in FORMATS:
        raise click.BadParameter(f"use a name ending in {', '.join(FORMATS)}", param_hint="-o")
    scenario = load(file)
    names = ("model", "kernel") if compare else (backend,)
    save([run(scenario, BACKENDS[name](policy)) for name in names], path)
    click.echo(f"wrote {path}", err=True)


@main.command("regions")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--file", "name", required=True, help="The scenario file to show (hp/f).")
@_policy_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also draw a .png/.svg.")
def regions_command(file: str, name: str, policy: Policy, output: str | None) -> None:
    """Show one file's reservation map after each step, on the model."""
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.views.regions import FORMATS, save_image, table

    if output and Path(output).suffix not in FORMATS:
        raise click.BadParameter(f"use a name ending in {', '.join(FORMATS)}", param_hint="-o")
    trace = run(load(file), ModelBackend(policy))
    title = f"{trace.scenario}: reservation map of {name}, {policy} policy"
    _out().print(table(trace, name, title))
    if output:
        save_image(trace, name, title, output)
        click.echo(f"wrote {output}", err=True)


@main.command("explain")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--step", "index", type=click.IntRange(min=0), required=True,
              help="The step's index (as run shows it).")
@_policy_option
def explain_command(file: str, index: int, policy: Policy) -> None:
    """Show a step on the model, why it failed, and every counter before and after it."""
    from hugetlbsim.backends.model import ModelBackend
    from hugetlbsim.views.explain import explanation, initial_state

    scenario, backend = load(file), ModelBackend(policy)
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


from hugetlbsim.fuzz.cli import fuzz  # noqa: E402  (the fuzz package registers its command)

main.add_command(fuzz)
