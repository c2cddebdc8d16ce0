"""The processes under a pid, read from /proc, for tests that check what a
command leaves behind (tests/test_processes.py, tests/test_room_plugin.py).

Each is noted with its start time: a process reparented to init gets ppid 1,
and a pid may be reused; the start time tells a process from a later one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks since boot: tells a process from a later one with its pid
    cmdline: str

    @staticmethod
    def read(pid: int) -> Proc | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
        if fields[0] == "Z":
            return None  # a zombie has let go of everything; only its exit status is left
        return Proc(pid, int(fields[1]), int(fields[19]), cmdline.strip())

    def alive(self) -> bool:
        now = Proc.read(self.pid)
        return now is not None and now.start == self.start


def descendants(pid: int) -> list[Proc]:
    found: list[Proc] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                proc = Proc.read(child)
                if proc is not None and proc not in found:
                    found.append(proc)
                    todo.append(child)
    return found


def naming(text: str) -> list[Proc]:
    """Every process whose command line or environment holds ``text``: a folder
    of a test's own that the processes it started were given (a config file, a
    workdir in their environment), so that processes of other pytest sessions
    running the same commands are not counted."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            named = text.encode() in (entry / "cmdline").read_bytes() or text.encode() in (entry / "environ").read_bytes()
        except OSError:
            continue
        if named and (proc := Proc.read(int(entry.name))) is not None:
            found.append(proc)
    return found
