"""Per-module mutation score of the last `make mutation` run (reads `mutmut results --all true`).

Usage: .venv/bin/python tools/mutation_summary.py [--survivors]

Only the mutants that `make mutation` runs are counted: every function of the metrics, retrieval and masking modules,
and the loss functions of `modeling_umbert.py` (the rest of that file is generated but never run). The score is
killed / (killed + survived + no tests); docs/mutation.md explains each survivor (equivalent or acceptable).
"""

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

# Module -> the functions counted, or None for all of them.
MODULES: dict[str, set[str] | None] = {
    "umbert_hf.evaluation.metrics": None,
    "umbert_hf.retrieval": None,
    "umbert_hf.masking": None,
    "umbert_hf.modeling_umbert": {
        "_similarity_logits",
        "contrastive_loss",
        "catalogue_contrastive_loss",
        "outfit_loss",
    },
    # The output-safety module: its output check and error reporting (not the shareable-name helpers).
    "umbert_hf.utils.paths": {
        "_inside",
        "_protected_folders",
        "_holds_marker",
        "foreign_file",
        "_matches",
        "check_output",
        "first_line",
        "run_command",
    },
}
# How the summary names a module of which only some functions are mutated.
PARTS = {"umbert_hf.modeling_umbert": " (losses)", "umbert_hf.utils.paths": " (output checks)"}
# `umbert_hf.retrieval.xǁCategoryIndexǁtop_k__mutmut_3` or `umbert_hf.masking.x_mask_slots__mutmut_12`.
NAME = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<klass>\w+)ǁ|_)(?P<function>\w+?)__mutmut_(?P<number>\d+)$")


def results() -> list[tuple[str, str]]:
    mutmut = Path(sys.executable).with_name("mutmut")
    output = subprocess.run(
        [str(mutmut), "results", "--all", "true"], check=True, capture_output=True, text=True
    ).stdout
    rows = []
    for line in output.splitlines():
        if ": " in line:
            name, status = line.strip().rsplit(": ", 1)
            rows.append((name, status))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    args = parser.parse_args()
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in results():
        match = NAME.match(name)
        if not match or match["module"] not in MODULES:
            continue
        functions = MODULES[match["module"]]
        if functions is not None and (match["klass"] or match["function"] not in functions):
            continue
        label = match["module"] + (PARTS.get(match["module"], "") if functions is not None else "")
        counts[label][status] += 1
        if status in ("survived", "no tests"):
            survivors[label].append(name)
    if not counts:
        print("No mutation results: run `make mutation` first.")
        return 1
    print(f"{'module':40} {'total':>6} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6}  score")
    for label, count in counts.items():
        total = sum(count.values())
        killed, survived, untested = count["killed"], count["survived"], count["no tests"]
        other = total - killed - survived - untested
        tested = killed + survived + untested
        score = f"{100 * killed / tested:.1f}%" if tested else "-"
        print(f"{label:40} {total:>6} {killed:>7} {survived:>9} {untested:>9} {other:>6}  {score}")
        if other:
            print(
                f"    other: {dict((status, n) for status, n in count.items() if status not in ('killed', 'survived', 'no tests'))}"
            )
    if args.survivors:
        for label, names in survivors.items():
            print(f"\n{label}: {len(names)} surviving (see `.venv/bin/mutmut show NAME`)")
            for name in names:
                print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
