#!/usr/bin/env python3
"""Each row of issue 30's table as a ratio against its peer or floor, both
measured in this one run, alternating (so machine load hits both alike).

Usage: python3 benches/ratios.py BIN REPO [--runs N] [--json OUT]

BIN is a missionctl binary, REPO a synthetic repository (examples/synth_repo,
committed). Each row runs the peer and missionctl alternately RUNS times in
fresh processes and reports the median wall time and the median CPU time
(user + system, from wait4) of each, and their ratios. CPU time moves much
less with machine load than wall time does, so the regression check
(.ci/bench-check) compares CPU ratios; the wall ratio is the table's figure.

Rows:
  resolve      `missionctl resolve` of one chain (work tree)
               vs `cat` of the files it reads
  resolve-rev  the same with `--rev HEAD`
               vs `git cat-file --batch` of the same blobs at HEAD
  validate     `missionctl validate` (every pack, every rule, every chain)
               vs `cat` of every file of the repository (through xargs)
  validate-rev `missionctl validate --rev HEAD`
               vs `git cat-file --batch` of every blob at HEAD
"""

import json
import os
import statistics
import subprocess
import sys
import time

CHAIN = ["--domain", "domain-03", "--tenant", "tenant-003", "--user", "user-00003"]


def run(argv, cwd, stdin_bytes=None):
    """Wall and CPU seconds of one fresh process; its stdout is discarded."""
    start = time.perf_counter()
    p = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if stdin_bytes is not None:
        p.stdin.write(stdin_bytes)
        p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, p.returncode


def files_of_chain(bin_, repo):
    """The repository files `resolve` reads for CHAIN: every `file` its
    output names (packs, sections, cases, skills), the policies and mission."""
    out = subprocess.run(
        [bin_, "resolve", *CHAIN, "--format", "json"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    found = set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "file" and isinstance(x, str):
                    found.add(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(out))
    for d in ["policies"]:
        for f in sorted(os.listdir(os.path.join(repo, d))):
            found.add(f"{d}/{f}")
    found.add("mission.yaml")
    return sorted(f for f in found if os.path.isfile(os.path.join(repo, f)))


def all_files(repo):
    out = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [f for f in out.splitlines() if f]


def row(name, ours, peer, repo, runs, peer_stdin=None):
    w_ours, c_ours, w_peer, c_peer = [], [], [], []
    for i in range(runs):
        # Alternate which goes first, so neither always runs on a warm cache.
        order = [(peer, peer_stdin, w_peer, c_peer), (ours, None, w_ours, c_ours)]
        if i % 2:
            order.reverse()
        for argv, stdin_bytes, w, c in order:
            wall, cpu, rc = run(argv, repo, stdin_bytes)
            if rc != 0 and argv is ours and argv[1] == "resolve":
                sys.exit(f"{name}: {' '.join(argv)} exited {rc}")
            w.append(wall)
            c.append(cpu)
    med = statistics.median
    r = {
        "ours_wall_ms": med(w_ours) * 1e3,
        "peer_wall_ms": med(w_peer) * 1e3,
        "ours_cpu_ms": med(c_ours) * 1e3,
        "peer_cpu_ms": med(c_peer) * 1e3,
    }
    r["wall_ratio"] = r["ours_wall_ms"] / max(r["peer_wall_ms"], 1e-3)
    r["cpu_ratio"] = r["ours_cpu_ms"] / max(r["peer_cpu_ms"], 1e-3)
    print(
        f"{name:13} ours {r['ours_wall_ms']:8.1f} ms wall {r['ours_cpu_ms']:8.1f} ms cpu | "
        f"peer {r['peer_wall_ms']:7.1f} ms wall {r['peer_cpu_ms']:7.1f} ms cpu | "
        f"ratio wall {r['wall_ratio']:6.2f}x cpu {r['cpu_ratio']:6.2f}x",
        flush=True,
    )
    return r


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    bin_, repo = os.path.abspath(args[0]), os.path.abspath(args[1])
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 11
    out = args[args.index("--json") + 1] if "--json" in args else None
    chain_files = files_of_chain(bin_, repo)
    every = all_files(repo)
    blobs = lambda fs: "".join(f"HEAD:{f}\n" for f in fs).encode()
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{len(every)} files, chain of {len(chain_files)} files; {runs} alternating runs",
        flush=True,
    )
    rows = {}
    rows["resolve"] = row(
        "resolve", [bin_, "resolve", *CHAIN], ["cat", *chain_files], repo, runs
    )
    rows["resolve-rev"] = row(
        "resolve-rev",
        [bin_, "resolve", "--rev", "HEAD", *CHAIN],
        ["git", "cat-file", "--batch"],
        repo,
        runs,
        peer_stdin=blobs(chain_files),
    )
    vruns = max(3, runs // 2)
    # Through xargs: 10,000 packs' paths do not fit one command line.
    listing = os.path.join(repo, ".git", "bench-files")
    with open(listing, "w") as f:
        f.write("\n".join(every) + "\n")
    rows["validate"] = row(
        "validate",
        [bin_, "validate"],
        ["xargs", "-d", "\n", "-a", listing, "cat"],
        repo,
        vruns,
    )
    rows["validate-rev"] = row(
        "validate-rev",
        [bin_, "validate", "--rev", "HEAD"],
        ["git", "cat-file", "--batch"],
        repo,
        vruns,
        peer_stdin=blobs(every),
    )
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
