"""hugetlbsim: an executable model of Linux HugeTLB reservation accounting.

Layers, bottom up: the reservation map (`resv_map`, `region_store`); the global pool
(`hstate`), hugetlbfs subpools (`subpool`) and hugetlb cgroups (`hugetlb_cgroup`); pages
(`folio`), inodes (`inode`) and mappings (`vma`); the flows that call down into them
(`reserve`, `fault`, `unmap`, `fileops`); the `System` facade (`system`); and on top the
scenario runner, the backends and the CLI.
"""

__version__ = "0.1.0"
