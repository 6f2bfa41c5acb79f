"""The system calls a grading kernel may not make: a seccomp filter, loaded as the last step of its sandbox.

The namespaces of :mod:`grader_tests.engine.sandbox` decide what a kernel can see; this filter narrows what it can
ask the Linux kernel for. A kernel needs files, memory, threads, signals, pipes and Unix sockets (ZeroMQ talks to
the grader over them); it never needs another socket family, a new namespace, a mount, another process's memory,
eBPF, perf events, the kernel keyring, io_uring or module loading, each a way out of a sandbox or into the host's
kernel. Those calls fail with ``EPERM``; ``socket`` of another family than ``AF_UNIX`` fails with ``EOPNOTSUPP``
(``AF_VSOCK``, a channel to the virtual machine's host, is not namespaced; ``AF_NETLINK`` and ``AF_PACKET`` talk
to the kernel's network code): ZeroMQ, which looks up network interfaces as ipykernel starts, takes that error
for "no interfaces here" and goes on, where another would abort the kernel. ``clone3`` fails with
``ENOSYS``, which makes the C library fall back to ``clone``, whose flags a filter can read: no ``CLONE_NEW*``.

The filter is libseccomp's (Debian's ``libseccomp2``), through ``pyseccomp``; system calls of another ABI than
the native one (x32, i386) kill the process (libseccomp's default for a foreign architecture).
"""

from __future__ import annotations

import errno
import socket

DENIED = (
    # other processes' memory, tracing
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # namespaces and mounts
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    # the host kernel's larger attack surfaces
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl", "acct", "swapon", "swapoff",
    "syslog", "reboot", "personality",
)
"""Denied outright (``EPERM``)."""

CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
"""CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME: a ``clone`` with any of them fails."""

SOCKET_FAMILIES = (socket.AF_UNIX,)
"""The only socket family a kernel may open (``socket`` and ``socketpair``)."""


def available() -> str | None:
    """Why no filter can be loaded here, or None if it can (libseccomp and its binding are installed)."""
    try:
        import pyseccomp

        pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    except (ImportError, OSError, RuntimeError) as error:
        return f"no seccomp filter: libseccomp is missing ({type(error).__name__}: {error})"
    return None


def restrict() -> None:
    """Load the filter into this process (single-threaded, with ``no_new_privs`` set); every thread and child
    it starts afterwards inherits it, and nothing can remove it."""
    import pyseccomp as sc

    syscall_filter = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED:
        try:
            syscall_filter.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            pass  # a call this architecture or libseccomp does not know cannot be made either
    for call in ("socket", "socketpair"):
        syscall_filter.add_rule(sc.ERRNO(errno.EOPNOTSUPP), call, sc.Arg(0, sc.NE, SOCKET_FAMILIES[0]))
    for flag in CLONE_NEW:  # one rule a flag: a filter compares masked arguments for equality only
        syscall_filter.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    syscall_filter.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    syscall_filter.load()
