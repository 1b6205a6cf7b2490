"""The mutation score of a `mutmut run` (mutmut 3), per module, from the results in ./mutants/.

    python tools/mutation_score.py                 # table + total; exit 1 under --fail-under
    python tools/mutation_score.py --survivors     # also every survivor's name
    python tools/mutation_score.py --only '*__mutmut_*7'   # the score of a subset (fnmatch on names)
    python tools/mutation_score.py --sample 300    # a seeded random sample of mutant names, for
                                                   # `mutmut run $(...)` when a full run is too long

Killed means a test failed (or timed out, or the type checker refused the mutant); the score
is killed / (killed + survived) over the mutants that were run. "No tests" (no selected test
reaches the function) and "not checked" (not run yet) are shown but not scored.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 152, 255, 36, 37, -9, -11}  # failed, pytest error, timeouts, type check, killed
SURVIVED = {0}
NO_TESTS = {5, 33}


def results(root: Path) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code or None}} from mutmut's .meta files."""
    found = {}
    for meta in sorted(root.glob("**/*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if codes:
            found[str(meta.relative_to(root))[: -len(".meta")]] = codes
    return found


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's work folder")
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 below this score (percent)")
    parser.add_argument("--sample", type=int, default=None, help="print N random mutant names and exit")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--only", default=None, help="score only the mutants whose names match this pattern")
    args = parser.parse_args(argv)

    found = results(args.mutants)
    if args.only is not None:
        found = {m: {n: c for n, c in codes.items() if fnmatch.fnmatch(n, args.only)} for m, codes in found.items()}
        found = {m: codes for m, codes in found.items() if codes}
    if not found:
        print(f"no mutmut results under {args.mutants}/ (run `make mutants` first)", file=sys.stderr)
        return 2
    if args.sample is not None:
        names = sorted(name for codes in found.values() for name in codes)
        print("\n".join(sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))))
        return 0

    total: Counter[str] = Counter()
    print(f"{'module':45} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'not run':>7} {'score':>6}")
    for module, codes in found.items():
        counts = Counter(status(code) for code in codes.values())
        total.update(counts)
        print(row(module, len(codes), counts))
    print(row("total", sum(total.values()), total))
    if args.survivors:
        print()
        for codes in found.values():
            for name, code in sorted(codes.items()):
                if status(code) == "survived":
                    print(name)
    scored = total["killed"] + total["survived"]
    score = 100.0 * total["killed"] / scored if scored else 0.0
    if args.fail_under is not None and score < args.fail_under:
        print(f"mutation score {score:.1f}% is under {args.fail_under:.1f}%", file=sys.stderr)
        return 1
    return 0


def row(module: str, count: int, counts: Counter[str]) -> str:
    scored = counts["killed"] + counts["survived"]
    score = f"{100.0 * counts['killed'] / scored:.1f}%" if scored else "-"
    return (
        f"{module:45} {count:7} {counts['killed']:7} {counts['survived']:8} {counts['no tests']:8}"
        f" {counts['not checked']:7} {score:>6}"
    )


if __name__ == "__main__":
    sys.exit(main())
