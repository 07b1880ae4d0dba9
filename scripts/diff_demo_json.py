"""Compare the numbers of two ``gcp-robust demo --format json`` outputs, cell by cell.

Every number of each model's object (counts, errors, CE, flip probabilities, robust
accuracies, ...) is keyed by its path, list items by what they measure
(``.cells[fog/3].top1_error``); timings are left out. Prints, per model, how many numbers
each file has, how many differ, and the first differences; exits 1 if any differ or a
number is missing from one side.

Usage:
    gcp-robust demo --format json -o before.json     # on the old code
    gcp-robust demo --format json -o after.json      # on the new code
    python scripts/diff_demo_json.py before.json after.json
"""

from __future__ import annotations

import json
import sys

KEYS = ("corruption", "severity", "perturbation", "difficulty", "attack", "epsilon")
IGNORED = ("computed", "seconds")


def numbers(obj, path: str = "") -> dict[str, float]:
    """Every number in ``obj`` by its path."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(numbers(value, f"{path}.{key}"))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            label = "/".join(str(value[k]) for k in KEYS if k in value) if isinstance(value, dict) else ""
            out.update(numbers(value, f"{path}[{label or i}]"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[path] = obj
    return out


def models(path: str) -> dict[str, dict]:
    """The demo JSON's objects by model; exits with one line for a file that is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            return {m["model"]: m for m in json.load(handle)}
    except (OSError, ValueError) as error:
        sys.exit(f"{path}: {getattr(error, 'strerror', None) or error}")
    except (KeyError, TypeError):
        sys.exit(f"{path}: not the output of `gcp-robust demo --format json` (a list of model objects)")


def main(before: str, after: str) -> int:
    old, new = models(before), models(after)
    failed = sorted(set(old) ^ set(new))
    for name in failed:
        print(f"{name}: only in {'the first' if name in old else 'the second'} file")
    for name in sorted(set(old) & set(new)):
        a = {k: v for k, v in numbers(old[name]).items() if not any(i in k for i in IGNORED)}
        b = {k: v for k, v in numbers(new[name]).items() if not any(i in k for i in IGNORED)}
        differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        missing = sorted(set(a) ^ set(b))
        print(f"{name}: {len(a)} and {len(b)} numbers, {len(differ)} differ, {len(missing)} on one side only")
        for key in differ[:20]:
            print(f"  {key}: {a[key]} -> {b[key]}")
        for key in missing[:20]:
            print(f"  {key}: only in {'the first' if key in a else 'the second'}")
        if differ or missing:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
