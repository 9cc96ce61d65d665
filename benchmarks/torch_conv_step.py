"""PyTorch CPU's conv training step against conv_step.py's numpy floor, each timed in its
own processes.

The networks are conv_step.py's: the course's ResNet-9 (`needle.models.ResNet9`) and the
MNIST CNN, softmax loss, SGD lr 0.01, float32, on conv_step's random batches. PyTorch's
model is built layer for layer from the needle model's initial weights (NCHW Conv2d with
bias and padding (K − 1)//2, BatchNorm2d with needle's eps and momentum, ReLU, residual
adds, Flatten, Linear), so both sides start from the same point and take the same steps.
Before timing, each PyTorch process checks its first step against conv_step's float64
floor, as conv_step.py checks needle's: the loss within 1e-5 (relative) and the first
conv's weight gradient within 3× the float32 floor's own error of it (or 1e-4).

As in torch_step.py, PyTorch is never timed in a process that runs numpy's BLAS (its OpenMP
threads keep spinning after each op and take the two cores): fresh processes take turns,
one timing PyTorch's step, one the floor's (`conv_floor.FloorStep`), each shifting its heap
first, and the table gives the medians over processes and floor ms / PyTorch ms. Multiply
a needle/floor ratio from conv_step.py by that figure for needle against PyTorch.

Thread settings: `default` leaves both libraries their own (PyTorch: one per core; OpenBLAS:
one per core); `1` calls torch.set_num_threads(1) on PyTorch's side and sets
OPENBLAS_NUM_THREADS (and OMP/MKL) to 1 in both, as `conv_step.py --blas-threads 1` does.

Optional: it needs torch, which needle does not. PyTorch's side can run under another
interpreter, such as a virtual environment that has torch and numpy:

    python benchmarks/torch_conv_step.py --torch-python /path/to/venv/bin/python
    python benchmarks/torch_conv_step.py --torch-python PY --networks resnet9 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import conv_step
import numpy as np
from _harness import shift_heap, time_steps
from conv_step import GRAD_FACTOR, GRAD_RTOL, LOSS_RTOL, NETWORKS, relative_error

from needle import nn

THREADS = ("default", "1")


# -- needle's weights in PyTorch's layouts ---------------------------------------------------


def conv_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """needle's (K, K, Cin, Cout) conv weight as PyTorch's (Cout, Cin, K, K)."""
    return np.ascontiguousarray(weight.transpose(3, 2, 0, 1))


def conv_weight_from_torch(weight: np.ndarray) -> np.ndarray:
    """PyTorch's (Cout, Cin, K, K) conv weight (or its gradient) as needle's (K, K, Cin, Cout)."""
    return weight.transpose(2, 3, 1, 0)


def linear_weight_to_torch(weight: np.ndarray) -> np.ndarray:
    """needle's (in, out) Linear weight, x @ W, as PyTorch's (out, in), x @ Wᵀ."""
    return np.ascontiguousarray(weight.T)


def torch_module_of(module: nn.Module):
    """The PyTorch module computing what a needle module does, from copies of its weights."""
    import torch

    def parameter(array: np.ndarray) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.from_numpy(np.array(array, np.float32)))

    if isinstance(module, nn.Sequential):
        return torch.nn.Sequential(*[torch_module_of(m) for m in module.modules])
    if isinstance(module, nn.Residual):
        return _Residual(torch_module_of(module.fn))
    if isinstance(module, nn.Conv):
        k = module.kernel_size
        bias = module.bias is not None
        conv = torch.nn.Conv2d(
            module.in_channels, module.out_channels, k, module.stride, module.padding, bias=bias
        )
        conv.weight = parameter(conv_weight_to_torch(module.weight.numpy()))
        if bias:
            conv.bias = parameter(module.bias.numpy())
        return conv
    if isinstance(module, nn.BatchNorm2d):
        bn = torch.nn.BatchNorm2d(module.dim, eps=module.eps, momentum=module.momentum)
        bn.weight, bn.bias = parameter(module.weight.numpy()), parameter(module.bias.numpy())
        # PyTorch updates running_var with the unbiased variance, needle with the biased:
        # the running statistics are not used in a training step, so the steps agree.
        bn.running_mean.copy_(torch.from_numpy(module.running_mean.numpy()))
        bn.running_var.copy_(torch.from_numpy(module.running_var.numpy()))
        return bn
    if isinstance(module, nn.Linear):
        linear = torch.nn.Linear(
            module.in_features, module.out_features, bias=module.bias is not None
        )
        linear.weight = parameter(linear_weight_to_torch(module.weight.numpy()))
        if module.bias is not None:
            linear.bias = parameter(module.bias.numpy().reshape(-1))
        return linear
    if isinstance(module, nn.ReLU):
        return torch.nn.ReLU()
    if isinstance(module, nn.Flatten):
        return torch.nn.Flatten()
    raise TypeError(f"no PyTorch layer for needle's {type(module).__name__}")


def _Residual(fn):  # noqa: N802 - builds a module, as a class would
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, fn: torch.nn.Module) -> None:
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x) + x

    return Residual(fn)


# -- one side, in this process ---------------------------------------------------------------


class TorchStep:
    """The step as a PyTorch user writes it: the model, CrossEntropyLoss, SGD."""

    def __init__(self, model) -> None:
        import torch

        self.model = model
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(model.parameters(), lr=conv_step.LR)
        self.first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))

    def __call__(self, x, y) -> float:
        self.opt.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.item()


def torch_side(network: str, batch_size: int, grad_factor: float = GRAD_FACTOR):
    """PyTorch's step from the needle model's weights, checked against the float64 floor
    on the first batch (its first conv's weight gradient within `grad_factor` × the float32
    floor's own error): the step, the batches in PyTorch's form, and the errors."""
    import torch

    needle_step, floor_step, _, batches = conv_step.setup(network, batch_size)
    step = TorchStep(torch_module_of(needle_step.model))
    inputs = [(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))) for x, y in batches]
    reference = floor_step.reference
    loss, floor_loss, exact = step(*inputs[0]), floor_step(*batches[0]), reference(*batches[0])
    exact_grad = reference.first_conv.grads[0]
    grad = conv_weight_from_torch(step.first_conv.weight.grad.numpy())
    errors = {
        "loss_err": abs(loss - exact) / abs(exact),
        "floor_loss_err": abs(floor_loss - exact) / abs(exact),
        "grad_err": relative_error(grad, exact_grad),
        "floor_grad_err": relative_error(floor_step.first_conv.grads[0], exact_grad),
    }
    grad_bound = max(grad_factor * errors["floor_grad_err"], GRAD_RTOL)
    if errors["loss_err"] > LOSS_RTOL or errors["grad_err"] > grad_bound:
        raise AssertionError(
            f"PyTorch and the float64 floor disagree on {network}: loss {loss} against "
            f"{exact} (relative error {errors['loss_err']:.1e}, at most {LOSS_RTOL:.0e}); "
            f"first conv's weight gradient relative error {errors['grad_err']:.1e} (at most "
            f"{grad_bound:.1e}: {grad_factor:g}× the float32 floor's, or {GRAD_RTOL:.0e}; "
            "--grad-factor sets the multiple)"
        )
    return step, inputs, errors


def floor_side(network: str, batch_size: int):
    _, floor_step, _, batches = conv_step.setup(network, batch_size)
    return floor_step, batches, {}


def time_one_side(
    side: str, network: str, batch_size: int, rounds: int, steps: int, grad_factor: float
) -> dict:
    """Median ms per step of one side, alone in this process, after a warm-up round."""
    if side == "torch":
        step, batches, errors = torch_side(network, batch_size, grad_factor)
    else:
        step, batches, errors = floor_side(network, batch_size)
    time_steps(step, batches, steps)  # caches, allocator, threads
    times = [time_steps(step, batches, steps)[0] for _ in range(rounds)]
    return {"ms": statistics.median(times) * 1e3, **errors}


# -- processes and the table -----------------------------------------------------------------


def in_fresh_process(python: str, options: list[str], env: dict[str, str]) -> dict:
    """The JSON this script prints when run with `options`, from a new Python process."""
    result = subprocess.run([python, __file__, *options], capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"a measuring process failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def run_all(args: argparse.Namespace) -> list[dict]:
    specs = [(t, net, b) for t in args.threads for net in args.networks for b in args.batch_sizes]
    runs: dict[tuple, dict[str, list[dict]]] = {spec: {"torch": [], "numpy": []} for spec in specs}
    # Processes take turns between rows and sides, so drift on the machine hits them all.
    for seed in range(args.processes):
        for threads, net, b in specs:
            env = dict(os.environ)
            if threads != "default":
                for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                    env[name] = threads
            options = ["--side", "", "--threads", threads, "--networks", net]
            options += ["--batch-sizes", str(b), "--heap-seed", str(seed)]
            options += ["--rounds", str(args.rounds), "--steps", str(args.steps)]
            options += ["--grad-factor", str(args.grad_factor)]
            for side, python in (("numpy", sys.executable), ("torch", args.torch_python)):
                options[1] = side
                runs[threads, net, b][side].append(in_fresh_process(python, options, env))
    rows = []
    for threads, net, b in specs:
        torch_runs, numpy_runs = runs[threads, net, b]["torch"], runs[threads, net, b]["numpy"]
        t = statistics.median(r["ms"] for r in torch_runs)
        n = statistics.median(r["ms"] for r in numpy_runs)
        ratios = [f["ms"] / r["ms"] for f, r in zip(numpy_runs, torch_runs, strict=True)]
        rows.append(
            {
                "threads": threads,
                "network": net,
                "batch_size": b,
                "torch_ms": t,
                "numpy_ms": n,
                "ratio": n / t,
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "loss_err": max(r["loss_err"] for r in torch_runs),
                "grad_err": max(r["grad_err"] for r in torch_runs),
            }
        )
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"PyTorch from {args.torch_python}; medians over {args.processes} alternating pairs "
        f"of fresh processes, each the median of {args.rounds} rounds of {args.steps} steps; "
        "ratio: floor ms / PyTorch ms (range: of the pairs); errors: PyTorch's first step "
        "against the float64 floor (the largest over processes)"
    )
    print(
        f"{'threads':>7} {'network':>9} {'batch':>5} {'torch ms':>8} {'floor ms':>8} "
        f"{'ratio':>6} {'range':>11} {'loss err':>8} {'grad err':>8}"
    )
    for r in rows:
        print(
            f"{r['threads']:>7} {r['network']:>9} {r['batch_size']:>5} {r['torch_ms']:>8.2f} "
            f"{r['numpy_ms']:>8.2f} {r['ratio']:>5.2f}x {r['ratio_min']:>5.2f}-"
            f"{r['ratio_max']:.2f}x {r['loss_err']:>8.1e} {r['grad_err']:>8.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", nargs="+", choices=list(NETWORKS), default=["resnet9", "mnist_cnn"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--threads", nargs="+", choices=THREADS, default=list(THREADS))
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--processes", type=int, default=3, help="alternating process pairs")
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch")
    parser.add_argument(
        "--grad-factor",
        type=float,
        default=GRAD_FACTOR,
        help="PyTorch's first conv weight gradient may be off float64 by this multiple of the "
        f"float32 floor's own error (default {GRAD_FACTOR}; the table shows the error)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--side", choices=["torch", "numpy"], help=argparse.SUPPRESS)
    parser.add_argument("--heap-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        if args.side == "torch" and args.threads[0] != "default":
            import torch

            torch.set_num_threads(int(args.threads[0]))
        padding = shift_heap(args.heap_seed)
        out = time_one_side(
            args.side,
            args.networks[0],
            args.batch_sizes[0],
            args.rounds,
            args.steps,
            args.grad_factor,
        )
        del padding
        print(json.dumps(out))
        return
    rows = run_all(args)
    if args.json:
        print(json.dumps(rows))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
