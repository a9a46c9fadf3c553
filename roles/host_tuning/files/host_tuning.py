"""Probe or apply the host tuning of the ascend_ops.vllm host_tuning role (standard library only).

    python3 host_tuning.py probe|apply WANTED_JSON

WANTED_JSON: {"governor": "performance", "thp": "always", "migration_cost_ns": 50000,
              "sysctl": {"vm.swappiness": 0, "kernel.numa_balancing": 0}, "paths": {...}}
("" / 0 leaves a knob alone). Prints one JSON document:
    {"now": {knob: value}, "drift": [...], "skipped": [...], "changed": [...], "jemalloc": path or null,
     "migration_via": "sysctl" | "debugfs" | null}
drift: knobs whose value differs from the wanted one and that this run may write (in apply mode: what
is still different after writing). skipped: knobs that cannot be tuned here, each with the reason and
the fix: absent on this kernel, or not writable (a read-only /proc/sys or /sys, as in a container,
whose kernel belongs to the host). changed: what apply wrote. Never fails on a knob; exit 0.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import sys

JEMALLOC_GLOBS = ("/usr/lib/*/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/lib64/libjemalloc.so.2",
                  "/usr/local/lib/libjemalloc.so.2")


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def write(path: str, value: str) -> str | None:
    """None when written, else why not."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(value)
    except OSError as exc:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return None


def not_writable(path: str) -> str | None:
    """Why this path cannot be written (read-only file system, permission), None when it looks writable."""
    if os.access(path, os.W_OK):
        return None
    try:
        stat = os.statvfs(path)
        if stat.f_flag & os.ST_RDONLY:
            return "EROFS: read-only file system"
    except OSError:
        pass
    return "EACCES: not writable by this user"


class Knob:
    """One tunable: where it lives, what it is, what is wanted."""

    def __init__(self, name: str, paths: list[str], want: str, ok, absent_fix: str) -> None:
        self.name, self.paths, self.want, self.ok, self.absent_fix = name, paths, want, ok, absent_fix

    def seen(self) -> str | None:
        values = sorted({v for v in (read(p) for p in self.paths) if v is not None})
        return ",".join(values) if values else None

    def wrong_paths(self) -> list[str]:
        return [p for p in self.paths if read(p) is not None and not self.ok(read(p), self.want)]


def knobs(wanted: dict) -> list[Knob]:
    paths = wanted["paths"]
    out = []
    if wanted.get("governor"):
        out.append(Knob("cpu governor", sorted(glob.glob(paths["governor_glob"])), wanted["governor"],
                        lambda seen, want: seen == want,
                        "no cpufreq scaling_governor files (a VM, a container, or cpufreq disabled)"))
    if wanted.get("thp"):
        out.append(Knob("transparent hugepages", [paths["thp"]], wanted["thp"],
                        # the kernel shows the modes with the chosen one in brackets: "[always] madvise never"
                        lambda seen, want: f"[{want}]" in seen or seen == want, "no " + paths["thp"]))
    for key, want in (wanted.get("sysctl") or {}).items():
        out.append(Knob(f"sysctl {key}", [os.path.join(paths.get("sysctl_root", "/proc/sys"), key.replace(".", "/"))],
                        str(want),
                        lambda seen, want: seen == want, "this kernel has no such sysctl"))
    cost = int(wanted.get("migration_cost_ns") or 0)
    if cost > 0:
        # Older kernels have the sysctl; from 5.13 on it moved to debugfs (sched/migration_cost_ns).
        where = paths["migration_sysctl"] if read(paths["migration_sysctl"]) is not None else paths["migration_debugfs"]
        out.append(Knob("sched migration cost", [where], str(cost), lambda seen, want: seen == want,
                        f"neither {paths['migration_sysctl']} nor {paths['migration_debugfs']} exists "
                        "(mount debugfs on /sys/kernel/debug on kernels >= 5.13)"))
    return out


def survey(wanted: dict, host: str) -> dict:
    now, drift, skipped = {}, [], []
    for knob in knobs(wanted):
        seen = knob.seen()
        now[knob.name] = seen
        if seen is None:
            skipped.append(f"{knob.name}: not tuned, {knob.absent_fix}")
            continue
        wrong = knob.wrong_paths()
        if not wrong:
            continue
        blocked = [(p, not_writable(p)) for p in wrong]
        blocked = [(p, why) for p, why in blocked if why]
        line = f"{knob.name}: seen {seen}, want {knob.want}"
        if blocked:
            path, why = blocked[0]
            skipped.append(f"{line}; not writable here ({path}: {why}). In a container the value belongs to the "
                           f"host kernel: apply host_tuning on the machine that runs {host}'s kernel")
        else:
            drift.append(line)
    jemalloc = next((p for pattern in JEMALLOC_GLOBS for p in sorted(glob.glob(pattern))), None)
    paths = wanted["paths"]
    migration_via = ("sysctl" if read(paths["migration_sysctl"]) is not None
                     else "debugfs" if read(paths["migration_debugfs"]) is not None else None)
    return {"now": now, "drift": drift, "skipped": skipped, "changed": [], "jemalloc": jemalloc,
            "migration_via": migration_via}


def apply(wanted: dict, host: str) -> dict:
    changed, failed = [], []
    for knob in knobs(wanted):
        for path in knob.wrong_paths():
            if not_writable(path):
                continue  # reported by survey() as skipped
            why = write(path, knob.want)
            if why:
                failed.append(f"{knob.name}: writing {knob.want} to {path} failed ({why}); skipped")
            else:
                changed.append(f"{knob.name}: {path} = {knob.want}")
    result = survey(wanted, host)
    result["changed"] = changed
    result["skipped"] += failed
    # A knob that refused the write is reported in skipped; do not repeat it as drift.
    refused = {line.split(":")[0] for line in failed}
    result["drift"] = [line for line in result["drift"] if line.split(":")[0] not in refused]
    return result


def main() -> int:
    mode, wanted = sys.argv[1], json.loads(sys.argv[2])
    host = wanted.get("host", "this host")
    print(json.dumps(apply(wanted, host) if mode == "apply" else survey(wanted, host)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
