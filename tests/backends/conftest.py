"""Every kernel-marked test leaves the machine's cgroup2 hierarchy exactly as it found it: the
same cgroups, and the same ``cgroup.subtree_control`` in the root and in every cgroup (the v2
backend enables hugetlb where it needs it and must put it back).  Read under the machine-wide
session lock, so a concurrent session elsewhere is never mistaken for a leftover."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hugetlbsim.backends.kernel import LOCK_FILE, acquire_lock
from hugetlbsim.backends.kernel_cgroup import cgroup2_mount


def cgroup2_tree() -> dict[str, str] | None:
    """Relative cgroup path → its subtree_control, for the whole cgroup2 hierarchy (None when
    no cgroup2 is mounted or this is not root)."""
    top = cgroup2_mount()
    if top is None or os.geteuid() != 0:
        return None
    fd = acquire_lock(os.path.join("/tmp", LOCK_FILE), 300.0)
    try:
        tree: dict[str, str] = {}
        for dirpath, _, _ in os.walk(top):
            try:
                with open(os.path.join(dirpath, "cgroup.subtree_control")) as f:
                    tree[os.path.relpath(dirpath, top)] = f.read().strip()
            except FileNotFoundError:
                continue  # removed while walking (not one of ours: the lock is held)
        return tree
    finally:
        os.close(fd)


@pytest.fixture(autouse=True)
def cgroup2_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each kernel test: the cgroup2 hierarchy is as before the test."""
    if request.node.get_closest_marker("kernel") is None:
        yield
        return
    before = cgroup2_tree()
    yield
    assert cgroup2_tree() == before
