"""The README's first screen and .ci/run stay true to each other."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _test_command_in_ci() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = lines.index("# README test command:")
    return lines[marker + 1]


def test_ci_runs_the_readme_test_command() -> None:
    command = _test_command_in_ci()
    assert "pytest" in command
    assert command in (ROOT / "README.md").read_text().split("```")[3]


def test_readme_main_command_names_a_bundled_example() -> None:
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    example = first_block.split("hugetlbsim run ")[1].split()[0]
    assert (ROOT / example).is_file(), f"the README runs {example}, which does not exist"
