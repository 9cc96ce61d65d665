"""needle's convolutional training step against a numpy im2col floor, side by side in the
same process.

Networks: the course's ResNet-9 (`needle.models.ResNet9`) on CIFAR-shaped data (3×32×32,
10 classes) and a small MNIST CNN (1×28×28: three ConvBN blocks, 16, 32 and 64 channels,
strides 1, 2, 2, then Flatten and Linear(64·7·7, 10)); softmax loss, plain SGD (lr 0.01),
float32. The floor (`conv_floor.py`) is the same step hand-written in numpy, from the
needle model's own weights, in NHWC: im2col by one strided copy, one sgemm per conv for the
forward pass and one for the weight gradient, the input gradient by one sgemm per kernel
tap, each added into place (col2im: one product for all taps, then K² slice additions reading
Cin entries at a time, took 1.6× as long at the MNIST CNN's second layer), BatchNorm with batch
statistics, ReLU, residual adds, softmax loss and SGD. Every column sum (a bias's
gradient, a batch norm's statistics) is one product with a vector of ones, 5–20×
faster than numpy's `sum(axis=0)` down the rows. Before timing, each process checks both
sides against the floor run in float64 from the same weights, and refuses to time unless
both first losses are within 1e-5 of it (relative) and needle's first-conv weight gradient
is within 3× the float32 floor's own error of it (or 1e-4): a float32 gradient through
batch norm is only so exact (the table's last two columns), and two float32 steps that sum
in different orders differ by about as much.

`--mode eval` times evaluation instead, as a user evaluates: needle's `model.eval()` and
the forward pass under `autograd.no_grad()`, against the floor's forward pass with
BatchNorm's running statistics, keeping nothing for a backward pass (`FloorEval`). The
model first runs a training-mode forward pass over the batches, so that the running
statistics are not their initial zeros and ones; the check before timing is of the logits:
the float32 floor's within 1e-5 (relative) of the float64 floor's, needle's within 3× the
floor's own error (or 1e-5). `--mode train eval` gives rows of each.

    python benchmarks/conv_step.py                  # both networks, batches 32 and 128
    python benchmarks/conv_step.py --mode eval      # evaluation: forward only, no graph
    python benchmarks/conv_step.py --networks mnist_cnn --batch-sizes 128 --processes 7
    python benchmarks/conv_step.py --blas-threads 1 # OpenBLAS on one thread, both sides
    python benchmarks/conv_step.py --quick          # one process, two rounds: a smoke run

As in train_step.py, each (network, batch) row is measured in fresh processes taking turns
with the other rows, each shifting its heap first; in each, alternating rounds of needle
and numpy steps, the ratio of their medians. Peak memory is measured in one more fresh
process per side: the growth of the peak resident set (ru_maxrss) over a few steps, above
what the process held before its first step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from _harness import TUNED_MALLOC, alternate, peak_growth_mb, shift_heap, summarize
from conv_floor import LR, FloorConv, FloorEval, FloorStep, set_training  # noqa: F401

# Appended, not prepended: PYTHONPATH can point at another checkout to compare versions.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import needle as ndl  # noqa: E402
from needle import autograd, data, models, nn, optim  # noqa: E402

CLASSES = 10
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
GRAD_FACTOR = 3  # needle's gradient error may be this multiple of the float32 floor's own
LOGIT_RTOL = 1e-5
LOGIT_FACTOR = 3  # the same for the logits of an evaluation
MODES = ("train", "eval")


def mnist_cnn() -> nn.Sequential:
    return nn.Sequential(
        models.ConvBN(1, 16, 3, 1),
        models.ConvBN(16, 32, 3, 2),
        models.ConvBN(32, 64, 3, 2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, CLASSES),
    )


def tiny_cnn() -> nn.Sequential:
    """Every kind of layer the big networks have, at a size a test can afford: a strided
    5×5 conv, a residual pair of 3×3 convs, and a Flatten of more than one pixel."""
    return nn.Sequential(
        models.ConvBN(3, 4, 5, 2),
        nn.Residual(nn.Sequential(models.ConvBN(4, 4, 3, 1), models.ConvBN(4, 4, 3, 1))),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, CLASSES),
    )


# name: (model builder, image shape (C, H, W))
NETWORKS = {
    "resnet9": (models.ResNet9, (3, 32, 32)),
    "mnist_cnn": (mnist_cnn, (1, 28, 28)),
    "tiny": (tiny_cnn, (3, 8, 8)),
}


# -- needle's step and the comparison --------------------------------------------------------


class NeedleStep:
    """The step as a needle user writes it: modules, SoftmaxLoss, SGD."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.loss_fn = nn.SoftmaxLoss()
        self.opt = optim.SGD(model.parameters(), lr=LR)
        self.first_conv = next(m for m in walk(model) if isinstance(m, nn.Conv))

    def __call__(self, x: ndl.Tensor, y: ndl.Tensor) -> float:
        self.opt.reset_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return float(loss.numpy())


class NeedleEval:
    """Evaluation as a needle user writes it: `model.eval()`, then the forward pass under
    `no_grad()`, the logits as an array."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, x: ndl.Tensor, y: ndl.Tensor | None = None) -> np.ndarray:
        with autograd.no_grad():
            return self.model(x).numpy()


def walk(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [module] + [m for child in module.modules for m in walk(child)]
    if isinstance(module, nn.Residual):
        return [module, *walk(module.fn)]
    return [module]


def setup(network: str, batch_size: int, seed: int = 0, n_batches: int = 4, mode: str = "train"):
    """Both steps (`mode` "eval": both evaluations), from one model's weights, and the same
    batches in each side's form. The floor carries the float64 twin it is checked against
    as `reference`.

    For evaluation, the model first runs a training-mode forward pass over each batch
    (without a graph), so that BatchNorm's running statistics are no longer the initial
    zeros and ones: an evaluation that ignored them would then give other logits."""
    build, image = NETWORKS[network]
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.random((n_batches * batch_size, *image), dtype=np.float32)
    y = rng.integers(0, CLASSES, n_batches * batch_size).astype(np.uint8)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    # needle's side gets the batches as its DataLoader yields them (in order: no shuffle).
    tensor_batches = list(data.DataLoader(data.NDArrayDataset(x, y), batch_size=batch_size))
    model = build()
    if mode == "eval":
        with autograd.no_grad():
            for images, _ in tensor_batches:
                model(images)
        needle_side, floor_side = NeedleEval(model), FloorEval(model)
        floor_side.reference = FloorEval(model, np.float64)
        return needle_side, floor_side, tensor_batches, batches
    needle_step = NeedleStep(model)
    floor_step = FloorStep(model)
    # The float64 twin both sides are checked against, made before either side steps.
    floor_step.reference = FloorStep(model, np.float64)
    return needle_step, floor_step, tensor_batches, batches


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def agreement(needle_step, floor_step, tensor_batch, batch) -> dict[str, float]:
    """One step on each side and on the float64 reference: the relative errors of both
    sides' losses and first-conv weight gradients against it. Raises unless both losses are
    within LOSS_RTOL and needle's gradient within GRAD_FACTOR × the floor's own error (or
    GRAD_RTOL)."""
    reference = floor_step.reference
    losses = needle_step(*tensor_batch), floor_step(*batch), reference(*batch)
    exact_grad = reference.first_conv.grads[0]
    errors = {
        "loss_err": abs(losses[0] - losses[2]) / abs(losses[2]),
        "floor_loss_err": abs(losses[1] - losses[2]) / abs(losses[2]),
        "grad_err": relative_error(needle_step.first_conv.weight.grad.numpy(), exact_grad),
        "floor_grad_err": relative_error(floor_step.first_conv.grads[0], exact_grad),
    }
    grad_bound = max(GRAD_FACTOR * errors["floor_grad_err"], GRAD_RTOL)
    if max(errors["loss_err"], errors["floor_loss_err"]) > LOSS_RTOL or (
        errors["grad_err"] > grad_bound
    ):
        raise AssertionError(
            f"needle and the numpy floor disagree: losses {losses[0]} (needle) and "
            f"{losses[1]} (floor) against {losses[2]} in float64 (relative errors "
            f"{errors['loss_err']:.1e} and {errors['floor_loss_err']:.1e}, at most "
            f"{LOSS_RTOL:.0e}); first conv's weight gradient relative error "
            f"{errors['grad_err']:.1e} (at most {grad_bound:.1e}: {GRAD_FACTOR}× the "
            f"floor's {errors['floor_grad_err']:.1e}, or {GRAD_RTOL:.0e})"
        )
    return errors


def eval_agreement(needle_eval, floor_eval, tensor_batch, batch) -> dict[str, float]:
    """Both sides' logits for one batch against the float64 reference's: their relative
    errors. Raises unless the floor's is within LOGIT_RTOL and needle's within
    LOGIT_FACTOR × the floor's (or LOGIT_RTOL)."""
    exact = floor_eval.reference(*batch)
    errors = {
        "logit_err": relative_error(needle_eval(*tensor_batch), exact),
        "floor_logit_err": relative_error(floor_eval(*batch), exact),
    }
    bound = max(LOGIT_FACTOR * errors["floor_logit_err"], LOGIT_RTOL)
    if errors["floor_logit_err"] > LOGIT_RTOL or errors["logit_err"] > bound:
        raise AssertionError(
            f"needle and the numpy floor disagree: the logits' relative errors against the "
            f"floor in float64 are {errors['logit_err']:.1e} (needle; at most {bound:.1e}: "
            f"{LOGIT_FACTOR}× the floor's, or {LOGIT_RTOL:.0e}) and "
            f"{errors['floor_logit_err']:.1e} (the float32 floor; at most {LOGIT_RTOL:.0e})"
        )
    return errors


def measure(network: str, batch_size: int, rounds: int, steps: int, mode: str) -> dict[str, float]:
    needle_side, floor_side, tensor_batches, batches = setup(network, batch_size, mode=mode)
    check = agreement if mode == "train" else eval_agreement
    errors = check(needle_side, floor_side, tensor_batches[0], batches[0])
    timed = alternate(needle_side, floor_side, tensor_batches, batches, rounds, steps)
    return {"batch_size": batch_size, **timed, **errors}


def peak_growth(network: str, batch_size: int, side: str, steps: int, mode: str) -> float:
    """MB by which the peak resident set grows over `steps` steps of one side."""
    needle_step, floor_step, tensor_batches, batches = setup(network, batch_size, mode=mode)
    step, inputs = (needle_step, tensor_batches) if side == "needle" else (floor_step, batches)
    return peak_growth_mb(step, inputs, steps)


# -- processes and the table -----------------------------------------------------------------


def in_fresh_process(options: list[str], env: dict[str, str]) -> dict[str, float]:
    """The JSON this script prints when run with `options`, from a new Python process."""
    command = [sys.executable, __file__, "--json", *options]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"a measuring process failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def run_all(args: argparse.Namespace) -> list[dict]:
    env = dict(os.environ)
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.blas_threads)
    specs = [
        (mode, net, b) for mode in args.mode for net in args.networks for b in args.batch_sizes
    ]
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {spec: [] for spec in specs}
    # Processes take turns between rows, so drift on the machine hits all rows.
    for seed in range(args.processes):
        for mode, net, b in specs:
            options = ["--one-process", "--heap-seed", str(seed), "--networks", net]
            options += ["--batch-sizes", str(b), "--rounds", str(args.rounds)]
            options += ["--steps", str(args.steps), "--mode", mode]
            runs[mode, net, b].append(in_fresh_process(options, env)["rows"][0])
    rows = []
    for mode, net, b in specs:
        row = {"mode": mode, "network": net, **summarize(runs[mode, net, b])}
        for side in ("needle", "numpy"):
            options = ["--memory-side", side, "--networks", net, "--batch-sizes", str(b)]
            options += ["--steps", str(args.memory_steps), "--mode", mode]
            row[f"{side}_mb"] = in_fresh_process(options, env)["mb"]
        rows.append(row)
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    threads = args.blas_threads or "default"
    print(f"needle from {Path(ndl.__file__).parent}")
    print(
        f"allocator: {args.allocator} glibc malloc; BLAS threads: {threads}; each row: medians "
        f"over {args.processes} fresh processes of medians over {args.rounds} alternating "
        f"rounds of {args.steps} steps; flt: page faults a step; MB: peak RSS growth over "
        f"{args.memory_steps} steps; err, floor err: relative errors against the floor in "
        f"float64 of the first conv's weight gradient (train) or of the logits (eval)"
    )
    print(
        f"{'mode':>5} {'network':>9} {'batch':>5} {'needle ms':>9} {'numpy ms':>8} {'ratio':>6} "
        f"{'range':>11} {'needle flt':>10} {'numpy flt':>9} {'needle MB':>9} {'numpy MB':>8} "
        f"{'loss err':>8} {'err':>7} {'floor err':>9}"
    )
    for r in rows:
        train = r["mode"] == "train"
        loss_err = f"{r['loss_err']:.1e}" if train else "-"
        err, floor_err = (
            (r["grad_err"], r["floor_grad_err"])
            if train
            else (r["logit_err"], r["floor_logit_err"])
        )
        print(
            f"{r['mode']:>5} {r['network']:>9} {r['batch_size']:>5.0f} {r['needle_ms']:>9.2f} "
            f"{r['numpy_ms']:>8.2f} {r['ratio']:>5.2f}x {r['ratio_min']:>5.2f}-"
            f"{r['ratio_max']:.2f}x {r['needle_faults']:>10.0f} {r['numpy_faults']:>9.0f} "
            f"{r['needle_mb']:>9.1f} {r['numpy_mb']:>8.1f} {loss_err:>8} {err:>7.1e} "
            f"{floor_err:>9.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", nargs="+", choices=list(NETWORKS), default=["resnet9", "mnist_cnn"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=MODES,
        default=["train"],
        help="train: the training step; eval: the forward pass under no_grad (both: rows of each)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (median)")
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per row")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps for peak memory")
    parser.add_argument("--blas-threads", type=int, default=None, help="OpenBLAS threads")
    parser.add_argument("--quick", action="store_true", help="1 process, 2 rounds of 1 step")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--allocator",
        choices=["default", "tuned"],
        default="default",
        help="tuned: rerun with glibc malloc's trimming and mmap turned off",
    )
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--heap-seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-side", choices=["needle", "numpy"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.processes, args.rounds, args.steps, args.memory_steps = 1, 2, 1, 1
    if args.allocator == "tuned" and any(os.environ.get(k) != v for k, v in TUNED_MALLOC.items()):
        # glibc reads these once, at start-up: run again with them set.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **TUNED_MALLOC})
    network, batch_size = args.networks[0], args.batch_sizes[0]
    if args.memory_side:
        mb = peak_growth(network, batch_size, args.memory_side, args.memory_steps, args.mode[0])
        print(json.dumps({"mb": mb}))
        return
    if args.one_process:
        padding = shift_heap(args.heap_seed) if args.heap_seed is not None else []
        row = measure(network, batch_size, args.rounds, args.steps, args.mode[0])
        del padding
        print(json.dumps({"rows": [row]}))
        return
    rows = run_all(args)
    if args.json:
        print(json.dumps({"allocator": args.allocator, "rows": rows}))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
