"""Language-model runs through the one loop: perplexity falls on the built-in text, is
reported everywhere a loss is, a stop inside an epoch resumes bit for bit (the carried
hidden state included), and evaluation measures the validation text."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
from checkpoints import assert_same_state
from typer.testing import CliRunner

from needle.train.checkpoint import load_checkpoint
from needle.train.config import parse_config
from needle.train.evaluate import evaluate
from needle.train.language import LanguageModel
from needle.train.reports import Callbacks
from needle.train.rundir import CHECKPOINT_FILE
from needle.train.runner import resume, train
from needle.train.session import prepare
from needle.train.signals import StopFlag
from needle_cli.app import app

ROOT = Path(__file__).resolve().parents[1]

# 1,600 training tokens in 8 streams: 200 rows, 25 windows of 8 per epoch.
LSTM = """\
seed: 2
data: {dataset: counting, samples: 2000, classes: 6, noise: 0.1, bptt: 8}
model:
  layers:
    - embedding: 8
    - lstm: {hidden_size: 12, num_layers: 2}
    - dropout: 0.1
    - linear: 6
train:
  epochs: 3
  batch_size: 8
  optimizer: {name: adam, lr: 0.02}
"""


def config(*overrides: str, text: str = LSTM):
    return parse_config(text, "lm.yaml", list(overrides))


def test_perplexity_falls_on_the_built_in_text(tmp_path):
    result = train(config(), out=tmp_path)
    first, last = result.history[0], result.history[-1]
    classes, noise = 6, 0.1
    r = noise / classes
    q = 1 - noise + r
    best = math.exp(-q * math.log(q) - (classes - 1) * r * math.log(r))
    assert first.train_perplexity < classes * 1.5  # from about a uniform guess …
    assert last.val_perplexity < first.val_perplexity  # … falling …
    assert best <= last.val_perplexity < 0.5 * classes  # … towards the stream's entropy
    assert last.val_accuracy > 0.5


def test_a_language_model_trains_on_windows_of_tokens(tmp_path):
    session = prepare(config())
    assert isinstance(session.model, LanguageModel)
    assert len(session.train_loader) == 25 and session.data.label_shape == (8,)
    tokens = []
    train(
        config("train.epochs=1"),
        out=tmp_path,
        callbacks=Callbacks(on_step=lambda p: tokens.append(p.samples)),
    )
    # per token: a window counts its batch·bptt targets; 200 rows give 199 targets a stream
    assert tokens == [64] * 24 + [56] and sum(tokens) == 199 * 8


def test_the_shipped_transformer_config_lowers_perplexity_in_a_few_dozen_steps(tmp_path):
    shipped = (ROOT / "configs" / "text_transformer.yaml").read_text()
    result = train(config("data.samples=3000", text=shipped), out=tmp_path)  # 10 steps an epoch
    ppl = [m.val_perplexity for m in result.history]
    assert ppl == sorted(ppl, reverse=True) and ppl[-1] < 0.6 * ppl[0] < 0.6 * 10


def test_perplexity_is_in_the_metrics_the_summary_and_the_cli(tmp_path):
    result = train(config("train.epochs=2"), out=tmp_path)
    rows = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    for row in rows:
        assert row["train_perplexity"] == math.exp(row["train_loss"])
        assert row["val_perplexity"] == math.exp(row["val_loss"])
    header = (result.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",train_perplexity,val_perplexity")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["val_perplexity"] == math.exp(summary["val_loss"])
    path = tmp_path / "lm.yaml"
    path.write_text(LSTM)
    out = CliRunner().invoke(
        app, ["train", str(path), "--out", str(tmp_path), "--set", "train.epochs=1"]
    )
    assert out.exit_code == 0, out.output
    assert " ppl " in out.output and "val ppl" in out.output
    assert "tokens, vocabulary 6, windows of 8" in out.output


@pytest.mark.parametrize("stop_at", [(1, 3), (2, 24)])
def test_a_stop_inside_an_epoch_resumes_bit_for_bit_hidden_state_included(tmp_path, stop_at):
    straight = train(config(), out=tmp_path, name="straight")
    flag = StopFlag()

    def on_step(progress):
        if (progress.epoch, progress.step) == stop_at:
            flag.request(signal.SIGTERM)

    stopped = train(
        config(), out=tmp_path, name="stopped", callbacks=Callbacks(on_step=on_step), stop=flag
    )
    assert stopped.status == "interrupted" and stopped.stopped_at == stop_at
    kept = load_checkpoint(stopped.run_dir / CHECKPOINT_FILE)
    assert sorted(kept.carried) == ["0/0", "0/1"]  # the lstm's h and c
    assert kept.carried["0/0"].shape == (2, 8, 12)
    resumed = resume(stopped.run_dir)
    assert_same_state(
        load_checkpoint(straight.run_dir / CHECKPOINT_FILE),
        load_checkpoint(resumed.run_dir / CHECKPOINT_FILE),
    )


def test_resuming_without_the_carried_state_would_differ(tmp_path, monkeypatch):
    """The resume test above can fail: dropping the kept state changes the numbers."""
    straight = train(config("train.epochs=1"), out=tmp_path, name="straight")
    flag = StopFlag()

    def on_step(progress):
        if progress.step == 10:
            flag.request()

    stopped = train(
        config("train.epochs=1"),
        out=tmp_path,
        name="s",
        callbacks=Callbacks(on_step=on_step),
        stop=flag,
    )
    monkeypatch.setattr(LanguageModel, "restore_state", lambda self, state: None)
    resumed = resume(stopped.run_dir)
    assert resumed.history[0].train_loss != straight.history[0].train_loss


def test_evaluate_measures_the_validation_text_as_the_last_epoch_did(tmp_path):
    result = train(config("train.epochs=2"), out=tmp_path)
    measured = evaluate(result.run_dir)
    assert measured.loss == pytest.approx(result.history[-1].val_loss, rel=1e-6)
    assert measured.accuracy == result.history[-1].val_accuracy
    assert measured.perplexity == pytest.approx(math.exp(measured.loss))
    assert measured.samples == 392  # 400 tokens in 8 streams: 50 rows, 49 targets each
    assert measured.confusion.sum() == measured.samples
    assert "perplexity" in measured.to_json()
    out = CliRunner().invoke(app, ["evaluate", str(result.run_dir)])
    assert out.exit_code == 0, out.output
    assert "next-token accuracy" in out.output
    with pytest.raises(Exception, match="drop --data"):
        evaluate(result.run_dir, data=tmp_path / "x.npz")


def test_gradcheck_checks_a_language_model_config_on_its_first_window():
    from needle.gradcheck.targets import check_model

    text = """\
seed: 0
data: {dataset: counting, samples: 200, bptt: 3}
model:
  layers:
    - embedding: 3
    - lstm: {hidden_size: 3, num_layers: 2}
    - transformer: {num_layers: 1, num_head: 1, dim_head: 2, hidden_size: 3}
    - linear: 10
"""
    report = check_model(config(text=text), batch_size=2)
    assert report.passed
    assert any("lstm_cells" in name for name in report.input_names)
