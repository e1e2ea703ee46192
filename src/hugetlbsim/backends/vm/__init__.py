"""The ``vm`` backend: scenarios run on Debian kernels booted in qemu guests (TCG).

Modules: `cache` (kernel packages fetched with apt, the uncompressed images, host checks),
`vmlinux` (the ELF image out of a bzImage), `initramfs` (the guest's Python, busybox and this
package, cached by content hash), `frames` (the checksummed records on the guest's second
serial port), `guest` (what runs inside the guest: the project's own kernel backend), `boot`
(qemu, timeouts, re-boots after a broken pool) and `backend` (`VmBackend`, ``vm:...`` specs).

This package's ``__init__`` imports nothing: the guest imports `guest` and `frames` only.
"""

__all__: list[str] = []
