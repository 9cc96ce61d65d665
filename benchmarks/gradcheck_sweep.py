"""How often `needle gradcheck --all` cries wolf, and how small an error it still catches.

Two sweeps, both with the default tolerances:

- false alarms: every registered op over each of its settings (what `--all` checks), for
  many seeds, in float64 and float32, orders 1 and 2. The ops are right, so every failure
  is a false alarm. Also printed: the closest call, the largest |analytic − numerical| seen
  as a fraction of its element's tolerance (1 would be a failure).
- sensitivity: each op's gradient multiplied by (1 + δ), for δ = 1e-3, 1e-4, …; a check
  that passes is an error missed. float64, order 1.

    python benchmarks/gradcheck_sweep.py                 # 100 seeds, sensitivity over 10
    python benchmarks/gradcheck_sweep.py --seeds 10      # a quick look
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from needle.autograd import TensorTuple
from needle.gradcheck import check_all, check_gradients
from needle.ops import REGISTRY, make_tuple

DELTAS = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]


def closeness(report) -> tuple[float, int]:
    """The largest |analytic − numerical| / tolerance over the report's comparisons (at
    each one's worst element), and the order of the comparison it is from."""
    ratios = [
        (abs(item.analytic - item.numerical) / item.tolerance, item.order)
        for item in report.comparisons
        if item.problem is None and item.tolerance > 0 and np.isfinite(item.analytic)
    ]
    return max(ratios, default=(0.0, 1))


def describe(report) -> str:
    params = " ".join(f"{key}={value}" for key, value in report.params.items())
    return f"{report.label}{' ' + params if params else ''}, seed {report.seed}"


def false_alarms(seeds: int) -> None:
    print(f"every op and setting (what --all checks), seeds 0-{seeds - 1}, default tolerances")
    print(
        f"{'dtype':<8} {'order':>5} {'checks':>7} {'false alarms':>13} {'seconds':>8}  closest call"
    )
    for dtype in ("float64", "float32"):
        for order in (1, 2):
            started = time.perf_counter()
            checks = alarms = 0
            closest, where = 0.0, ""
            for seed in range(seeds):
                for report in check_all(seed=seed, dtype=dtype, order=order):
                    checks += 1
                    alarms += not report.passed
                    ratio, of_order = closeness(report)
                    if ratio > closest:
                        closest, where = ratio, f"{describe(report)}, order {of_order}"
            seconds = time.perf_counter() - started
            print(
                f"{dtype:<8} {order:>5} {checks:>7} {alarms:>13} {seconds:>8.1f}  "
                f"{closest:.3f} of its tolerance ({where})"
            )


def scaled(op_class: type, factor: float) -> type:
    """`op_class` with every input's gradient multiplied by `factor`."""

    class Scaled(op_class):
        def gradient(self, out_grad, node):
            grads = super().gradient(out_grad, node)
            if isinstance(grads, tuple):
                return tuple(None if g is None else g * factor for g in grads)
            if isinstance(grads, TensorTuple):  # stack's one input is a tuple of tensors
                return make_tuple(*(g * factor for g in grads.tuple()))
            return grads * factor

    return Scaled


def applied(op, spec, tensors):
    """`op` on the sample tensors, as the registry's function passes them."""
    return op(make_tuple(*tensors)) if spec.tuple_input else op(*tensors)


def sensitivity(seeds: int) -> None:
    # Every (op, setting, seed) whose gradient is not 0 everywhere (power_scalar with
    # exponent 0 has nothing to scale), with its inputs.
    cases = []
    for spec in REGISTRY.values():
        for setting in spec.settings:
            params = spec.resolve_params(setting.params)
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                inputs = spec.sample_inputs(params, rng=rng, shapes=setting.shapes)
                right = check_gradients(
                    lambda *t, spec=spec, params=params: spec.apply(params, *t),
                    inputs,
                    seed=seed,
                )
                if any(item.zeros < item.checked for item in right.inputs):
                    cases.append((spec, params, seed, inputs))
    print()
    print(
        f"each op's gradient times (1 + δ): checks that fail, float64, order 1, "
        f"{len(cases)} (op, setting, seed) with a gradient that is not 0, seeds 0-{seeds - 1}"
    )
    print(f"{'δ':>7} {'caught':>14}  missed")
    smallest_everywhere = None
    for delta in DELTAS:
        caught, missed = 0, set()
        for spec, params, seed, inputs in cases:
            broken = scaled(spec.op_class, 1 + delta)
            report = check_gradients(
                lambda *tensors, b=broken, p=params, s=spec: applied(b(**p), s, tensors),
                inputs,
                seed=seed,
            )
            caught += not report.passed
            if report.passed:
                missed.add(spec.name)
        total = len(cases)
        print(f"{delta:>7.0e} {caught:>6} of {total:<5}  {', '.join(sorted(missed)) or '—'}")
        if caught == total:
            smallest_everywhere = delta
    if smallest_everywhere is not None:
        print(f"smallest δ caught by every check: {smallest_everywhere:.0e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeds for the false alarms")
    parser.add_argument("--sensitivity-seeds", type=int, default=10)
    args = parser.parse_args()
    false_alarms(args.seeds)
    sensitivity(args.sensitivity_seeds)


if __name__ == "__main__":
    main()
