"""The stdio guard: a `command:` child never outlives the gateway (Linux only).

The `mcp` client runs a stdio server in a new session and, when it closes the connection,
signals the server's whole process group. A gateway killed with SIGKILL closes nothing, so its
children (and theirs: `npx` -> `sh` -> `node`) would run for ever. So the stdio backend runs

    python -I -S guard.py GATEWAY_PID -- COMMAND [ARG...]

in place of the command. The guard asks the kernel for a signal when the gateway dies
(PR_SET_PDEATHSIG), adopts every descendant whose parent dies (PR_SET_CHILD_SUBREAPER), and
runs the command as its child, with the same stdin, stdout and stderr. When the gateway is gone
it kills its whole tree, descendants that left the process group (setsid) included. While the
gateway lives it forwards SIGTERM, SIGINT and SIGHUP to its children, reaps, and exits with the
command's status (a signal is 128 + its number) once the last descendant has ended, so the
process the gateway waits for lives exactly as long as the tree.

It is run by file path and imports only the standard library: nothing of mcp_tornado.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The kernel's "parent died" signal, kept apart from SIGTERM (which the gateway's orderly close
# sends): it also comes when the thread that spawned us ends, and only getppid() says which.
PARENT_DIED = signal.SIGUSR1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANDLED = (PARENT_DIED, *FORWARDED)


def descendants() -> dict[int, int]:
    """Every process below us, adopted ones included, mapped to its process group (from /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[2]))  # parent, process group
        except (OSError, IndexError, ValueError):
            pass  # not a process, or gone meanwhile
    found: dict[int, int] = {}
    level = {os.getpid()}
    while level:
        level = {pid for pid, (parent, _) in table.items() if parent in level}
        found.update((pid, table[pid][1]) for pid in level)
    return found


def send(pids: list[int], signum: int) -> bool:
    """Send `signum` to each of `pids`; whether it reached any."""
    reached = False
    for pid in pids:
        try:
            os.kill(pid, signum)
            reached = True
        except OSError:
            pass
    return reached


def kill_tree() -> None:
    """SIGKILL every descendant and reap our children, until none is left (or none can be killed).

    Each death makes the dead one's children ours (we are their subreaper), so we reap them all.
    """
    while send(list(descendants()), signal.SIGKILL):
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: guard.py GATEWAY_PID -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    gateway, command, child, status = int(argv[1]), argv[3:], 0, 0

    def on_signal(signum: int, frame: object) -> None:
        if os.getppid() != gateway:  # the gateway is gone: take the whole tree with us
            try:
                kill_tree()
            finally:
                os.killpg(os.getpgrp(), signal.SIGKILL)
        if signum == PARENT_DIED:
            return  # only the gateway's thread that spawned us ended
        if not child:
            os._exit(128 + signum)
        # Whoever signals us signals our process group (the `mcp` client does): pass it on to
        # the command, and to the descendants that left the group, which the group signal missed.
        group = os.getpgrp()
        send([pid for pid, pgid in descendants().items() if pid == child or pgid != group], signum)

    # The command's dispositions as it would have had them without us; Python ignores SIGPIPE and
    # SIGXFSZ for itself, and `subprocess` restores them in the children it starts, so we do too.
    inherited = {signum: signal.getsignal(signum) for signum in HANDLED}
    inherited.update({signal.SIGPIPE: signal.SIG_DFL, signal.SIGXFSZ: signal.SIG_DFL})
    for signum in HANDLED:
        signal.signal(signum, on_signal)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, PARENT_DIED, 0, 0, 0)
    if os.getppid() != gateway:
        return 128 + PARENT_DIED  # it died before the prctl: the signal will never come
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)  # no handler of ours may run in the child
    child = os.fork()
    if child == 0:
        for signum, disposition in inherited.items():
            signal.signal(signum, disposition)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            missing = isinstance(exc, FileNotFoundError)
            reason = "program not found" if missing else f"cannot run program ({exc.strerror})"
            os.write(2, f"{reason}: {command[0]}\n".encode(errors="replace"))
            os._exit(127 if missing else 126)
    # The command owns stdin and stdout: our copies would keep its pipes open after it died.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            return status
        if pid == child:
            code = os.waitstatus_to_exitcode(wait_status)
            status = 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
