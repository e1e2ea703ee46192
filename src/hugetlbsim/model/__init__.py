"""The kernel mirror: HugeTLB accounting as Linux keeps it, with no knowledge of scenarios.

Bottom up: the reservation map (`region_store`, `resv_map`, and `resv_map_list`, the kernel's
plain list walk kept as the reference); the counters (`hstate`, `subpool`, `hugetlb_cgroup`);
pages, inodes and mappings (`folio`, `blocks`, `inode`, `vma`, `mm`); the flows (`reserve`,
`fault`, `bulk`, `unmap`, `fileops`); the `System` facade (`system`), its `snapshot` and its
`invariants`.
"""
