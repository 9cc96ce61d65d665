"""Training: the one loop (`epoch`, `run_batches`, as the course's `needle.train.epoch`) and,
in its own modules, everything `needle train` builds on it.

    loop        the one training loop: run_batches, epoch, Totals; fit with its Hooks
    language    language models in that loop: bptt windows, the carried hidden state
    source      YAML read safely, every value keeping its file, line and column
    overrides   --set key.path=value
    fields      Strict config sections, error wording, number types
    constructors  a family a config names, settings read from the signatures
    optimizers  the optimizers a config names (train.optimizer)
    schedules   the learning-rate schedules (train.schedule) and the hook that applies them
    clipping    train.clip_grad_norm's hook
    early_stopping  train.early_stopping: the best epoch's monitor, and the hook that stops
    layer_stats train.log_stats: per-layer norms, update ratios, dead ReLUs
    layers      the layer types a config names, one definition each, registered by name
    config      TrainConfig and its sections; load, validate, write back
    schema      the config's JSON Schema
    datasets    the data a config names (a package: the dataset registry, generators,
                files, DataConfig, loading); the library's datasets are needle.data
    normalize   data.normalize statistics
    build       a validated config's model: plan (shapes per layer, parameters), then build
    session     a config made real: data, model, optimizer, loaders
    checkpoint  the checkpoint file format
    rundir      a run's folder and the files in it
    reports     what a run reports (progress, epochs, result)
    signals     stopping on Ctrl-C, SIGTERM, SIGHUP
    runner      train and resume: a run from start to stop
    restore     a finished run opened again: config, checkpoint, model with its weights
    evaluate    a finished run measured again
    predict     a finished run used on new data, or to continue a prompt
    history     a run's metrics read back as series (needle plot)
    runs_index  run folders read as plain data, and how their configs differ
    sweep       needle sweep: trials from a grid and seeded draws, run in worker processes
    sweep_ray   the same trials as tasks on a Ray cluster, their run folders written back

Only the loop is imported here, so `import needle.train` stays light (no YAML, no pydantic).
"""

from needle.train.loop import BatchResult, Totals, epoch, run_batches

__all__ = ["BatchResult", "Totals", "epoch", "run_batches"]
