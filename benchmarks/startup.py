"""How fast `needle --help` and `needle --version` start, against `python -c "import typer"`.

Each command runs in a fresh process, alternating with the reference; the figure is the
ratio of medians. Issue target: at most 1.5×.

    python benchmarks/startup.py            # 15 alternating runs of each
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

REFERENCE = [sys.executable, "-c", "import typer"]
COMMANDS = {
    "needle --help": [sys.executable, "-m", "needle_cli", "--help"],
    "needle --version": [sys.executable, "-m", "needle_cli", "--version"],
}


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    wall_time(REFERENCE)  # warm the file cache
    print(f"{'command':<20} {'median ms':>10} {'import typer ms':>16} {'ratio':>7}")
    for name, argv in COMMANDS.items():
        wall_time(argv)
        ours, reference = [], []
        for _ in range(args.runs):
            ours.append(wall_time(argv))
            reference.append(wall_time(REFERENCE))
        a, b = statistics.median(ours) * 1e3, statistics.median(reference) * 1e3
        print(f"{name:<20} {a:>10.1f} {b:>16.1f} {a / b:>6.2f}x")


if __name__ == "__main__":
    main()
