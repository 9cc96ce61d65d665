"""Training: the one loop (`epoch`, `run_batches`, as the course's `needle.train.epoch`) and,
in its own modules, everything `needle train` builds on it.

    loop        the one training loop: run_batches, epoch, Totals; fit with its Hooks
    source      YAML read safely, every value keeping its file, line and column
    overrides   --set key.path=value
    fields      Strict config sections, error wording, number types
    constructors  a family a config names, settings read from the signatures
    optimizers  the optimizers a config names (train.optimizer)
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
    evaluate    a finished run measured again

Only the loop is imported here, so `import needle.train` stays light (no YAML, no pydantic).
"""

from needle.train.loop import BatchResult, Totals, epoch, run_batches

__all__ = ["BatchResult", "Totals", "epoch", "run_batches"]
