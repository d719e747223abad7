"""A seccomp filter for the generated code: no new processes, no kernel features it never needs.

bubblewrap loads the filter (`--seccomp FD`) into the sandboxed process just before it starts
the interpreter. Threads are allowed (`clone` with `CLONE_THREAD`); any other `clone`, `fork`,
`vfork` and `clone3` (answered `ENOSYS`, so the C library falls back to `clone` for threads)
fail, so the generated code is one process however it tries. Also refused: tracing and reading
other processes' memory, new namespaces, mounts, keyrings, BPF, perf events, userfaultfd,
memory that would escape the address-space limit (SysV shared memory and message queues, POSIX
queues, memfds), io_uring (its operations bypass this filter), inotify, and changing an inode's
owner, mode, times or extended attributes (chmod, chown, utime, setxattr and kin: under a root
engine the sandbox's uid is the host's root, owner of the host's device nodes).
The filter is built here as raw classic BPF, so no libseccomp is needed. Never blocks or raises.
"""

from __future__ import annotations

import errno
import platform
import struct
from typing import Final

__all__ = ["seccomp_filter"]

_CLONE_THREAD: Final = 0x00010000
_X32_BIT: Final = 0x40000000

# BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_ABS: Final = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ: Final = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE: Final = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET: Final = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET: Final = 0x06  # BPF_RET | BPF_K
_ALLOW: Final = 0x7FFF0000
_ERRNO: Final = 0x00050000
_KILL_PROCESS: Final = 0x80000000

# struct seccomp_data: nr at 0, arch at 4, args[0] (low word, little-endian) at 16.
_NR, _ARCH, _ARG0 = 0, 4, 16

# (audit arch, clone, clone3, syscalls refused with EPERM). Numbers from the kernel's tables.
_COMMON_GENERIC: Final = {
    # name: (x86_64, aarch64)
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    # Memory outside the address-space limit: SysV segments and queues, memfds.
    "shmget": (29, 194),
    "msgget": (68, 186),
    "memfd_create": (319, 279),
    "mq_open": (240, 180),
    # io_uring runs its operations outside this filter (IORING_OP_SETXATTR set an ACL on the
    # host's /dev/null where setxattr itself was refused); inotify instances and POSIX queues
    # count against the host user's small limits (a gate could exhaust them for the machine)
    # and inotify on the read-only binds shows host activity.
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "inotify_init1": (294, 26),
    "pidfd_getfd": (438, 438),
    # Owner-only changes to inodes. The device nodes under /dev are the host's own; when the
    # engine runs as root they belong to the sandbox's (host) uid, so chmod, chown or an ACL
    # (an extended attribute) would change them on the host.
    "utimensat": (280, 88),
    "fchmod": (91, 52),
    "fchmodat": (268, 53),
    "fchmodat2": (452, 452),
    "fchown": (93, 55),
    "fchownat": (260, 54),
    "setxattr": (188, 5),
    "lsetxattr": (189, 6),
    "fsetxattr": (190, 7),
    "removexattr": (197, 14),
    "lremovexattr": (198, 15),
    "fremovexattr": (199, 16),
    "setxattrat": (463, 463),
    "removexattrat": (466, 466),
}
_ARCHES: Final = {
    # Beyond the generic table: fork and vfork; chmod, chown and lchown; utime, utimes,
    # futimesat; inotify_init.
    "x86_64": (0xC000003E, 56, 435, (57, 58, 90, 92, 94, 132, 235, 261, 253), 0),
    "aarch64": (0xC00000B7, 220, 435, (), 1),
}


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine (`struct sock_filter[]`), or None for an unknown one.

    Never blocks or raises.
    """
    machine = machine or platform.machine()
    arch = _ARCHES.get(machine)
    if arch is None:
        return None
    audit_arch, clone, clone3, forks, column = arch
    refused = sorted({numbers[column] for numbers in _COMMON_GENERIC.values()} | set(forks))
    program: list[tuple[int, int, int, int]] = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, audit_arch),
        (_RET, 0, 0, _KILL_PROCESS),  # another ABI (i386 or x32 entry points) is never allowed
        (_LD_ABS, 0, 0, _NR),
    ]
    if machine == "x86_64":
        program.append((_JGE, 0, 1, _X32_BIT))
        program.append((_RET, 0, 0, _KILL_PROCESS))
    program.append((_JEQ, 0, 1, clone3))
    program.append((_RET, 0, 0, _ERRNO | errno.ENOSYS))
    for number in refused:
        program.append((_JEQ, 0, 1, number))
        program.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    program += [
        (_JEQ, 1, 0, clone),
        (_RET, 0, 0, _ALLOW),
        (_LD_ABS, 0, 0, _ARG0),
        (_JSET, 1, 0, _CLONE_THREAD),
        (_RET, 0, 0, _ERRNO | errno.EPERM),
        (_RET, 0, 0, _ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *op) for op in program)
