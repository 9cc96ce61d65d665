"""needle's LSTM language-model training step against a numpy floor, side by side in the
same process.

The model is `needle.models.LanguageModel` with an LSTM: embedding 64, hidden 128, 2 layers,
a vocabulary of 1000, float32, on windows of bptt 32 tokens × batch 32 (`data.batchify`,
`data.get_batch`); softmax loss, plain SGD (lr 0.01). The step is the course's training
loop's: reset_grad, forward from the hidden state the previous window left (detached),
loss, backward, step.

The floor is the same step hand-written in numpy, from the needle model's own weights:
the embedding as a row lookup, per layer and time step the four gates (i, f, g, o) as one
matmul of [x_t, h_{t−1}] with [W_ih; W_hh], sigmoid and tanh, full backpropagation through
time, the linear head, softmax loss and SGD. Before timing, each process checks that the two
sides compute the same step: needle's float32 loss and layer 0's W_ih gradient, and the
float32 floor's, are compared with the floor run in float64 (over two windows, the second
starting from the carried state). The float32 floor's own error sets the scale: needle's
must be within `ERROR_FACTOR` times it (plus `ERROR_ATOL`), or nothing is timed.

    python benchmarks/lstm_step.py                  # the issue's sizes
    python benchmarks/lstm_step.py --blas-threads 1 # OpenBLAS on one thread, both sides
    python benchmarks/lstm_step.py --quick          # one process, two rounds: a smoke run
    python benchmarks/lstm_step.py --torch-python /tmp/torchvenv/bin/python  # and PyTorch's

As in conv_step.py, each row is measured in fresh processes, each shifting its heap first;
in each, alternating rounds of needle and numpy steps, the ratio of their medians; peak
memory in one more fresh process per side. PyTorch's step (optional: torch is no needle
dependency) is timed in processes of its own under `--torch-python`, alternating with
processes timing the floor, as torch_step.py does: its OpenMP threads would spin against
numpy's BLAS threads in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from _harness import alternate, median_ms, peak_growth_mb, shift_heap, summarize
from conv_floor import softmax_loss

# Appended, not prepended: PYTHONPATH can point at another checkout to compare versions.
sys.path.append(str(Path(__file__).resolve().parents[1]))

LR = 0.01
# name: (vocabulary, embedding, hidden, layers, bptt, batch)
SIZES = {
    "issue": (1000, 64, 128, 2, 32, 32),
    "tiny": (11, 3, 4, 2, 5, 2),
}
ERROR_FACTOR = 3.0
ERROR_ATOL = 2 * float(np.finfo(np.float32).eps)  # float32's own rounding of a relative error


def token_stream(vocabulary: int, bptt: int, batch: int, windows: int, seed: int) -> np.ndarray:
    """Enough random token ids for `windows` windows of `bptt` rows (and one row more)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocabulary, (windows * bptt + 1) * batch)


# -- the numpy floor -------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


class FloorLSTMLayer:
    """One LSTM layer over a whole window. With z = [x_t, h_{t−1}] · [W_ih; W_hh] + b_ih + b_hh
    cut into i, f, g, o: c_t = σ(f)·c_{t−1} + σ(i)·tanh(g), h_t = σ(o)·tanh(c_t)."""

    def __init__(self, cell, dtype) -> None:
        w_ih, w_hh = cell.W_ih.numpy(), cell.W_hh.numpy()
        self.n_in, self.hidden = w_ih.shape[0], w_hh.shape[0]
        self.weight = np.concatenate([w_ih, w_hh]).astype(dtype)  # (in + H, 4H)
        self.bias_ih = cell.bias_ih.numpy().astype(dtype)
        self.bias_hh = cell.bias_hh.numpy().astype(dtype)
        self.params = [self.weight, self.bias_ih, self.bias_hh]

    def forward(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> np.ndarray:
        """x (T, B, in), the state (B, H) each → the h_t (T, B, H); the final state is kept."""
        steps, batch, _ = x.shape
        n, hid = self.n_in, self.hidden
        self.xh = np.empty((steps, batch, n + hid), x.dtype)  # each step's [x_t, h_{t−1}]
        self.xh[:, :, :n] = x
        self.gates = np.empty((steps, batch, 4 * hid), x.dtype)  # σ(i), σ(f), tanh(g), σ(o)
        self.cs = np.empty((steps + 1, batch, hid), x.dtype)  # c_{t−1} at t, c_T last
        self.tanh_c = np.empty((steps, batch, hid), x.dtype)
        out = np.empty((steps, batch, hid), x.dtype)
        bias = self.bias_ih + self.bias_hh
        self.cs[0] = c
        for t in range(steps):
            self.xh[t, :, n:] = h
            z = self.xh[t] @ self.weight
            z += bias
            a = self.gates[t]
            a[:, : 2 * hid] = sigmoid(z[:, : 2 * hid])
            a[:, 2 * hid : 3 * hid] = np.tanh(z[:, 2 * hid : 3 * hid])
            a[:, 3 * hid :] = sigmoid(z[:, 3 * hid :])
            i, f, g, o = a[:, :hid], a[:, hid : 2 * hid], a[:, 2 * hid : 3 * hid], a[:, 3 * hid :]
            c = f * self.cs[t] + i * g
            self.cs[t + 1] = c
            np.tanh(c, out=self.tanh_c[t])
            h = out[t] = o * self.tanh_c[t]
        self.final = (h, c)
        return out

    def backward(self, d_out: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        """d_out (T, B, H), the loss's gradient in each h_t (none in the detached final
        state) → the gradient in x; `grads` as `params`."""
        steps, batch, hid = d_out.shape
        n = self.n_in
        dz = np.empty((steps, batch, 4 * hid), d_out.dtype)
        dx = np.empty((steps, batch, n), d_out.dtype) if need_input_grad else None
        dh_next = np.zeros((batch, hid), d_out.dtype)
        dc_next = np.zeros((batch, hid), d_out.dtype)
        for t in range(steps - 1, -1, -1):
            a = self.gates[t]
            i, f, g, o = a[:, :hid], a[:, hid : 2 * hid], a[:, 2 * hid : 3 * hid], a[:, 3 * hid :]
            tc = self.tanh_c[t]
            dh = d_out[t] + dh_next
            dc = dh * o * (1 - tc * tc) + dc_next
            d = dz[t]
            d[:, :hid] = dc * g * i * (1 - i)
            d[:, hid : 2 * hid] = dc * self.cs[t] * f * (1 - f)
            d[:, 2 * hid : 3 * hid] = dc * i * (1 - g * g)
            d[:, 3 * hid :] = dh * tc * o * (1 - o)
            dc_next = dc * f
            dxh = d @ self.weight.T
            dh_next = dxh[:, n:]
            if dx is not None:
                dx[t] = dxh[:, :n]
        rows = steps * batch
        d_weight = self.xh.reshape(rows, -1).T @ dz.reshape(rows, -1)
        d_bias = dz.reshape(rows, -1).sum(axis=0)
        self.grads = [d_weight, d_bias, d_bias]
        return dx


class FloorStep:
    """The floor's step on (T, B) ids and (T·B,) targets, carrying (h, c) between calls."""

    def __init__(self, model, dtype=np.float32) -> None:
        self.embedding = model.embedding.weight.numpy().astype(dtype)
        self.layers = [FloorLSTMLayer(cell, dtype) for cell in model.seq_model.lstm_cells]
        self.head_w = model.linear.weight.numpy().astype(dtype)
        self.head_b = model.linear.bias.numpy().astype(dtype)
        self.dtype = dtype
        self.state = None

    def __call__(self, ids: np.ndarray, targets: np.ndarray) -> float:
        steps, batch = ids.shape
        hidden = self.layers[0].hidden
        if self.state is None:
            zero = np.zeros((batch, hidden), self.dtype)
            self.state = [(zero, zero)] * len(self.layers)
        x = self.embedding[ids]
        for layer, (h, c) in zip(self.layers, self.state, strict=True):
            x = layer.forward(x, h, c)
        self.state = [layer.final for layer in self.layers]
        features = x.reshape(steps * batch, hidden)
        loss, d_logits = softmax_loss(features @ self.head_w + self.head_b, targets)
        self.head_grads = [features.T @ d_logits, d_logits.sum(axis=0, keepdims=True)]
        d = (d_logits @ self.head_w.T).reshape(steps, batch, hidden)
        for k in range(len(self.layers) - 1, -1, -1):
            d = self.layers[k].backward(d, need_input_grad=True)
        self.embedding_grad = np.zeros_like(self.embedding)
        np.add.at(self.embedding_grad, ids.reshape(-1), d.reshape(steps * batch, -1))
        self.embedding -= LR * self.embedding_grad
        for layer in self.layers:
            for p, g in zip(layer.params, layer.grads, strict=True):
                p -= LR * g
        self.head_w -= LR * self.head_grads[0]
        self.head_b -= LR * self.head_grads[1]
        return loss

    def w_ih_grad(self) -> np.ndarray:
        """Layer 0's W_ih gradient from the last step (the top rows of [W_ih; W_hh]'s)."""
        return self.layers[0].grads[0][: self.layers[0].n_in]


# -- needle's step and the comparison --------------------------------------------------------


class NeedleStep:
    """The step as a needle user writes it, carrying the LSTM's state, detached, between
    windows as the course's training loop does."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        from needle import models, nn, optim

        vocabulary, embedding, hidden, layers = sizes[:4]
        self.model = models.LanguageModel(embedding, vocabulary, hidden, layers, seq_model="lstm")
        self.loss_fn = nn.SoftmaxLoss()
        self.opt = optim.SGD(self.model.parameters(), lr=LR)
        self.state = None

    def __call__(self, x, y) -> float:
        self.opt.reset_grad()
        logits, (h, c) = self.model(x, self.state)
        self.state = (h.detach(), c.detach())
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.opt.step()
        return float(loss.numpy())

    def w_ih_grad(self) -> np.ndarray:
        return self.model.seq_model.lstm_cells[0].W_ih.grad.numpy()


def setup(size: str, seed: int = 0, n_windows: int = 4):
    """Both steps from one model's weights, and the same windows in each side's form:
    needle's as `get_batch` gives them (float ids), the floor's as integer arrays."""
    from needle import data

    sizes = SIZES[size]
    vocabulary, bptt, batch = sizes[0], sizes[4], sizes[5]
    np.random.seed(seed)
    batches = data.batchify(token_stream(vocabulary, bptt, batch, n_windows, seed), batch)
    tensor_batches, numpy_batches = [], []
    for i in range(0, n_windows * bptt, bptt):
        x, y = data.get_batch(batches, i, bptt, dtype="float32")
        tensor_batches.append((x, y))
        numpy_batches.append((batches[i : i + bptt], batches[i + 1 : i + 1 + bptt].reshape(-1)))
    needle_step = NeedleStep(sizes)
    return needle_step, FloorStep(needle_step.model), tensor_batches, numpy_batches


def agreement(needle_step, floor_step, exact_step, tensor_batches, batches, windows: int = 2):
    """`windows` steps of needle, the float32 floor and the float64 floor (`exact_step`),
    all from one model: the largest relative errors, against float64, of the loss and of
    layer 0's W_ih gradient. Raises if needle's exceed ERROR_FACTOR × the float32 floor's
    + ERROR_ATOL."""
    errors = {"loss_err": 0.0, "grad_err": 0.0, "floor_loss_err": 0.0, "floor_grad_err": 0.0}
    for k in range(windows):
        reference = exact_step(*batches[k])
        found = {
            "loss_err": abs(needle_step(*tensor_batches[k]) - reference) / abs(reference),
            "floor_loss_err": abs(floor_step(*batches[k]) - reference) / abs(reference),
            "grad_err": relative_error(needle_step.w_ih_grad(), exact_step.w_ih_grad()),
            "floor_grad_err": relative_error(floor_step.w_ih_grad(), exact_step.w_ih_grad()),
        }
        errors = {key: max(errors[key], found[key]) for key in errors}
    for name in ("loss", "grad"):
        bound = ERROR_FACTOR * errors[f"floor_{name}_err"] + ERROR_ATOL
        if errors[f"{name}_err"] > bound:
            raise AssertionError(
                f"needle and the numpy floor disagree: needle's {name} relative error against "
                f"float64 is {errors[f'{name}_err']:.1e}, the float32 floor's "
                f"{errors[f'floor_{name}_err']:.1e} (needle may have at most {bound:.1e})"
            )
    return errors


def checked(size: str, seed: int = 0) -> dict[str, float]:
    """`agreement` on a fresh model of `size`."""
    needle_step, floor_step, tensor_batches, batches = setup(size, seed)
    exact_step = FloorStep(needle_step.model, np.float64)
    return agreement(needle_step, floor_step, exact_step, tensor_batches, batches)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def measure(size: str, rounds: int, steps: int) -> dict[str, float]:
    errors = checked(size)
    needle_step, floor_step, tensor_batches, batches = setup(size)
    timed = alternate(needle_step, floor_step, tensor_batches, batches, rounds, steps)
    return {**timed, **errors}


def peak_growth(size: str, side: str, steps: int) -> float:
    """MB by which the peak resident set grows over `steps` steps of one side."""
    needle_step, floor_step, tensor_batches, batches = setup(size)
    step, inputs = (needle_step, tensor_batches) if side == "needle" else (floor_step, batches)
    return peak_growth_mb(step, inputs, steps)


# -- PyTorch, optional -----------------------------------------------------------------------


def torch_step_factory(sizes: tuple[int, ...]):
    """The same model and step as a PyTorch user writes it (nn.LSTM is time-major too)."""
    import torch

    vocabulary, embedding, hidden, layers = sizes[:4]

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(vocabulary, embedding)
            self.lstm = torch.nn.LSTM(embedding, hidden, layers)
            self.linear = torch.nn.Linear(hidden, vocabulary)

        def forward(self, x, state):
            out, state = self.lstm(self.embedding(x), state)
            return self.linear(out.reshape(-1, hidden)), state

    model, loss_fn = Model(), torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    carried = [None]

    def step(x, y) -> float:
        opt.zero_grad()
        logits, (h, c) = model(x, carried[0])
        carried[0] = (h.detach(), c.detach())
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        return loss.item()

    def convert(x, y):
        return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))

    return step, convert


def time_one_side(side: str, size: str, rounds: int, steps: int) -> float:
    """Median ms per step of PyTorch's step or the floor's, alone in this process."""
    if side == "torch":
        step, convert = torch_step_factory(SIZES[size])
        vocabulary, bptt, batch = SIZES[size][0], SIZES[size][4], SIZES[size][5]
        stream = token_stream(vocabulary, bptt, batch, 4, 0)
        rows = stream.reshape(batch, -1).T  # batchify's columns
        batches = [convert(rows[i : i + bptt], rows[i + 1 : i + 1 + bptt].reshape(-1))
                   for i in range(0, 4 * bptt, bptt)]  # fmt: skip
    else:
        _, step, _, batches = setup(size)
    return median_ms(step, batches, rounds, steps)


# -- processes and the table -----------------------------------------------------------------


def in_fresh_process(options: list[str], env: dict[str, str], python: str = sys.executable):
    """The JSON this script prints when run with `options`, from a new Python process."""
    result = subprocess.run(
        [python, __file__, "--json", *options], capture_output=True, text=True, env=env
    )
    if result.returncode:
        sys.exit(f"a measuring process failed:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


def run_all(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if args.blas_threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.blas_threads)
    common = ["--size", args.size, "--rounds", str(args.rounds), "--steps", str(args.steps)]
    runs = []
    for seed in range(args.processes):
        options = ["--one-process", "--heap-seed", str(seed), *common]
        runs.append(in_fresh_process(options, env))
    row = {"size": args.size, **summarize(runs)}
    for side in ("needle", "numpy"):
        options = ["--memory-side", side, "--size", args.size]
        row[f"{side}_mb"] = in_fresh_process(options + ["--steps", str(args.memory_steps)], env)[
            "mb"
        ]
    result = {"rows": [row]}
    if args.torch_python:
        torch_ms, numpy_ms = [], []
        for seed in range(args.processes):
            for side, times in (("numpy", numpy_ms), ("torch", torch_ms)):
                options = ["--side", side, "--heap-seed", str(seed), *common]
                python = args.torch_python if side == "torch" else sys.executable
                times.append(in_fresh_process(options, env, python)["ms"])
        t, n = statistics.median(torch_ms), statistics.median(numpy_ms)
        result["torch"] = {"torch_ms": t, "numpy_ms": n, "ratio": t / n}
    return result


def print_table(result: dict, args: argparse.Namespace) -> None:
    import needle

    vocabulary, embedding, hidden, layers, bptt, batch = SIZES[args.size]
    print(f"needle from {Path(needle.__file__).parent}")
    print(
        f"LSTM language model: vocabulary {vocabulary}, embedding {embedding}, hidden {hidden}, "
        f"{layers} layers, bptt {bptt}, batch {batch}, float32"
    )
    print(
        f"BLAS threads: {args.blas_threads or 'default'}; each row: medians over "
        f"{args.processes} fresh processes of medians over {args.rounds} alternating rounds "
        f"of {args.steps} steps; flt: page faults a step; MB: peak RSS growth over "
        f"{args.memory_steps} steps; errors: relative to the float64 floor (needle's, the "
        "float32 floor's)"
    )
    print(
        f"{'needle ms':>9} {'numpy ms':>8} {'ratio':>6} {'range':>11} {'needle flt':>10} "
        f"{'numpy flt':>9} {'needle MB':>9} {'numpy MB':>8} {'loss err':>17} {'grad err':>17}"
    )
    for r in result["rows"]:
        print(
            f"{r['needle_ms']:>9.2f} {r['numpy_ms']:>8.2f} {r['ratio']:>5.2f}x "
            f"{r['ratio_min']:>5.2f}-{r['ratio_max']:.2f}x {r['needle_faults']:>10.0f} "
            f"{r['numpy_faults']:>9.0f} {r['needle_mb']:>9.1f} {r['numpy_mb']:>8.1f} "
            f"{r['loss_err']:>8.1e} {r['floor_loss_err']:>8.1e} "
            f"{r['grad_err']:>8.1e} {r['floor_grad_err']:>8.1e}"
        )
    if "torch" in result:
        t = result["torch"]
        print(
            f"PyTorch ({args.torch_python}), in processes of its own alternating with the "
            f"floor's: torch {t['torch_ms']:.2f} ms, numpy {t['numpy_ms']:.2f} ms, "
            f"{t['ratio']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="issue")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (median)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps for peak memory")
    parser.add_argument("--blas-threads", type=int, default=None, help="OpenBLAS threads")
    parser.add_argument("--torch-python", default=None, help="an interpreter with torch")
    parser.add_argument("--quick", action="store_true", help="1 process, 2 rounds of 1 step")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--heap-seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-side", choices=["needle", "numpy"], help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["torch", "numpy"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.processes, args.rounds, args.steps, args.memory_steps = 1, 2, 1, 1
    if args.memory_side:
        print(json.dumps({"mb": peak_growth(args.size, args.memory_side, args.memory_steps)}))
        return
    if args.one_process or args.side:
        padding = shift_heap(args.heap_seed) if args.heap_seed is not None else []
        if args.side:
            out = {"ms": time_one_side(args.side, args.size, args.rounds, args.steps)}
        else:
            out = measure(args.size, args.rounds, args.steps)
        del padding
        print(json.dumps(out))
        return
    result = run_all(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result, args)


if __name__ == "__main__":
    main()
