#!/usr/bin/env python3
"""Issue 28's marketplace figures, each against a floor measured in the same
run, alternating (so machine load hits both alike).

Usage: python3 benches/market.py BIN CATALOG FLEET [--runs N]

BIN is a missionctl binary; CATALOG a synthetic catalog repository
(`synth_repo --packs 1501 --domains 1000 --out CATALOG`: 1,000 domain
packs); FLEET a synthetic fleet (`synth_repo --packs 10000 --out FLEET`).
The script adds the catalog to FLEET's mission.yaml (committed) once.

Rows:
  index   `market index` of the 1,000-pack catalog (every version, every
          file hashed, every pack loaded)
          vs the floor: `git cat-file --batch` of every blob under
          packs/domains piped through `sha256sum` (reading and hashing
          the same bytes, nothing else)
  search  `market search domain-500 --offline` (the cached index)
          vs `grep -c domain-500` of the same index file
  show    `market show domain-500 --offline` on the 10,000-pack fleet:
          files digest-checked, the compatibility report (the validator
          run with and without the pack); goal < 1 s
          vs `missionctl validate` of the whole fleet (what the gate runs)
"""

import os
import statistics
import subprocess
import sys
import time


def run(argv, cwd, stdin_bytes=None, shell=False):
    start = time.perf_counter()
    p = subprocess.Popen(
        argv,
        cwd=cwd,
        shell=shell,
        stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if stdin_bytes is not None:
        p.stdin.write(stdin_bytes)
        p.stdin.close()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{argv} exited {code}")
    return wall, ru.ru_utime + ru.ru_stime


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def main():
    args = sys.argv[1:]
    runs = 5
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i : i + 2]
    bin_, catalog, fleet = (os.path.abspath(a) for a in args[:3])
    mission = os.path.join(fleet, "mission.yaml")
    text = open(mission).read()
    if "marketplace:" not in text:
        with open(mission, "a") as f:
            f.write(f"\nmarketplace:\n  catalogs:\n    - name: synth\n      git: {catalog}\n")
        git(fleet, "commit", "-qam", "List the synthetic catalog")
    # Warm the cache (index built once per catalog commit) before timing.
    subprocess.run([bin_, "market", "search", "--repo", fleet], check=True, capture_output=True)
    blobs = "".join(
        line.split()[2] + "\n"
        for line in git(catalog, "ls-tree", "-r", "HEAD", "packs/domains").splitlines()
    ).encode()
    out = "/tmp/market-bench-index.json"
    rows = {
        "index": (
            [bin_, "market", "index", "--repo", catalog, "--out", out],
            None,
            (f"git -C {catalog} cat-file --batch | sha256sum", blobs),
        ),
        "search": (
            [bin_, "market", "search", "domain-500", "--offline", "--repo", fleet],
            None,
            (f"grep -c domain-500 {out}", None),
        ),
        "show": (
            [bin_, "market", "show", "domain-500", "--offline", "--repo", fleet],
            None,
            ([bin_, "validate", "--repo", fleet], None),
        ),
    }
    # `search` reads the index `index` writes: make it once first.
    run([bin_, "market", "index", "--repo", catalog, "--out", out], None)
    print(f"runs per row: {runs} (median wall seconds; CPU seconds in brackets)")
    for name, (ours, _, (floor, stdin)) in rows.items():
        w_ours, c_ours, w_floor, c_floor = [], [], [], []
        for _ in range(runs):
            shell = isinstance(floor, str)
            w, c = run(floor, fleet, stdin, shell=shell)
            w_floor.append(w)
            c_floor.append(c)
            w, c = run(ours, fleet)
            w_ours.append(w)
            c_ours.append(c)
        mo, mf = statistics.median(w_ours), statistics.median(w_floor)
        print(
            f"{name:<7} missionctl {mo:.3f}s [{statistics.median(c_ours):.3f}]  "
            f"floor {mf:.3f}s [{statistics.median(c_floor):.3f}]  ratio {mo / mf:.1f}x"
        )


if __name__ == "__main__":
    main()
