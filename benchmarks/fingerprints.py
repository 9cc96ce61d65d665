"""Training fingerprints: the final losses and a hash of the checkpoint's arrays for a set of
configs that between them use every layer type, initializer, optimizer and dataset kind.

Not a timing: a record that a refactor changed no number. Run it before a change and after,
and compare the two outputs line by line (they must be identical):

    python benchmarks/fingerprints.py > before.txt
    ... change the code ...
    python benchmarks/fingerprints.py > after.txt && diff before.txt after.txt

The file datasets (npz, csv, mnist-format idx) are written by the script into a temporary
folder from a fixed seed, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from needle.data import write_idx
from needle.train.config import parse_config
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.runner import train


def write_files(folder: Path) -> dict[str, Path]:
    """Small file datasets: 8×8 'images' in 3 classes, as npz, csv and an idx folder."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(240, 64)).astype(np.float32)
    y = (X[:, :3].argmax(axis=1)).astype(np.uint8)
    npz = folder / "data.npz"
    np.savez(npz, X=X, y=y)
    csv = folder / "data.csv"
    header = ",".join(f"f{i}" for i in range(8)) + ",label"
    rows = [
        ",".join(f"{v:.6f}" for v in x[:8]) + f",{label}" for x, label in zip(X, y, strict=True)
    ]
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    idx = folder / "mnist"
    idx.mkdir()
    images = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    labels = (images[:, :, :14].mean(axis=(1, 2)) > 127.5).astype(np.uint8)
    for prefix, sl in (("train", slice(0, 200)), ("t10k", slice(200, 300))):
        write_idx(idx / f"{prefix}-images-idx3-ubyte", images[sl])
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", labels[sl])
    return {"npz": npz, "csv": csv, "mnist": idx}


CONFIGS = {
    "spirals-adam-kaiming_uniform": """
seed: 0
data: {dataset: spirals, samples: 300}
model:
  init: kaiming_uniform
  layers: [{linear: 32}, relu, {linear: 32}, tanh, {linear: 3}]
train: {epochs: 3, batch_size: 32, optimizer: {name: adam, lr: 0.01}}
""",
    "moons-sgd-momentum-xavier_uniform-residual-batchnorm": """
seed: 1
data: {dataset: moons, samples: 200, noise: 0.1}
model:
  init: xavier_uniform
  layers:
    - linear: 16
    - residual: [{linear: 8}, batchnorm1d, relu, {dropout: 0.2}, {linear: 16}, batchnorm1d]
    - sigmoid
    - linear: 2
train:
  epochs: 3
  batch_size: 20
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.001}
""",
    "circles-sgd-kaiming_normal-layernorm-identity": """
seed: 2
data: {dataset: circles, samples: 200}
model:
  init: kaiming_normal
  layers: [{linear: 16}, layernorm1d, relu, identity, {linear: 2}]
train: {epochs: 2, batch_size: 16, shuffle: false, optimizer: sgd}
""",
    "blobs-adam-xavier_normal-flatten": """
seed: 3
data: {dataset: blobs, samples: 150, classes: 3}
model:
  init: xavier_normal
  layers: [flatten, {linear: 8}, relu, {linear: 3}]
train: {epochs: 2, batch_size: 10, optimizer: {name: adam, lr: 0.005, weight_decay: 0.01}}
""",
    "xor-adam": """
seed: 4
data: {dataset: xor, samples: 200}
model:
  layers: [{linear: 8}, tanh, {linear: 2}]
train: {epochs: 2, batch_size: 25}
""",
    "npz-adam": """
seed: 5
data: {dataset: npz, path: "{npz}"}
model:
  layers: [{linear: 32}, relu, {dropout: 0.1}, {linear: 3}]
train: {epochs: 2, batch_size: 32}
""",
    "csv-sgd": """
seed: 6
data: {dataset: csv, path: "{csv}", label_column: label}
model:
  layers: [{linear: 16}, relu, {linear: 3}]
train: {epochs: 2, batch_size: 16, optimizer: {name: sgd, lr: 0.05}}
""",
    "mnist-idx-mlp": """
seed: 7
data: {dataset: mnist, path: "{mnist}"}
model:
  layers: [{linear: 32}, relu, {linear: 2}]
train: {epochs: 2, batch_size: 50, optimizer: {name: adam, lr: 0.001}}
""",
    "mnist-idx-conv-batchnorm-pool": """
seed: 8
data: {dataset: mnist, path: "{mnist}"}
model:
  layers:
    - conv: {out_channels: 4, kernel_size: 3, stride: 2}
    - batchnorm2d
    - relu
    - maxpool2d: 2
    - conv: 6
    - global_avgpool
    - linear: 2
train: {epochs: 2, batch_size: 50, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
""",
    "counting-lstm": """
seed: 9
data: {dataset: counting, samples: 600, classes: 5, noise: 0.1, bptt: 6}
model:
  layers: [{embedding: 6}, {lstm: {hidden_size: 8, num_layers: 2}}, {dropout: 0.1}, {linear: 5}]
train: {epochs: 2, batch_size: 4, optimizer: {name: adam, lr: 0.02}}
""",
    "counting-rnn": """
seed: 10
data: {dataset: counting, samples: 600, classes: 5, noise: 0.1, bptt: 6}
model:
  layers: [{embedding: 6}, {rnn: 8}, {linear: 5}]
train: {epochs: 2, batch_size: 4, optimizer: {name: sgd, lr: 0.1}}
""",
}


def array_hash(path: Path) -> str:
    """SHA-256 over every array of a checkpoint, by name, with its dtype and shape: the weights,
    the optimizer's state and the RNG's. The JSON `meta` entry is left out: it holds wall-clock
    seconds and the temporary folder's paths, which differ from run to run."""
    digest = hashlib.sha256()
    with np.load(path, allow_pickle=False) as arrays:
        for name in sorted(set(arrays.files) - {"meta"}):
            value = arrays[name]
            digest.update(f"{name}:{value.dtype}:{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_files(folder)
        for name, text in CONFIGS.items():
            for key, path in files.items():
                text = text.replace("{" + key + "}", str(path))
            config = parse_config(text, f"<{name}>")
            result = train(config, out=folder / "runs", name=name)
            losses = " ".join(f"{e.train_loss!r}" for e in result.history)
            checkpoint = array_hash(result.run_dir / CHECKPOINT_FILE)
            print(f"{name}: losses {losses} checkpoint {checkpoint}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
