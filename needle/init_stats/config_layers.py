"""A config's model, layer by layer: each Linear and Conv weight a training config builds,
against the theory of the initializer the config gives it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from needle import init, nn
from needle.init_stats.formulas import theory
from needle.init_stats.histograms import DEFAULT_BINS
from needle.init_stats.measurement import InitStats, measure


@dataclass(frozen=True)
class LinearLayerStats:
    """A model's Linear weight against the scheme that initialized it."""

    name: str  # where the layer is in its config, e.g. "model.layers[0]"
    stats: InitStats

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.stats.to_dict()}


def config_layer_stats(config: Any, *, bins: int = DEFAULT_BINS) -> list[LinearLayerStats]:
    """For each Linear and Conv layer of the model a training config builds (built as training
    builds it, after seeding numpy with `config.seed`), its weight against the theory of the
    initializer the config gives that layer (a conv's with its kernel's fans). Layers are
    named by their place in the config, e.g. "model.layers[2].residual.layers[0]"."""
    from needle.train.build import build_model
    from needle.train.datasets import load_data
    from needle.train.layers import Conv, Linear, walk_layers
    from needle.train.source import dotted

    data = load_data(config)
    with init.seeded(config.seed):
        model = build_model(config, data.sample_shape, data.num_classes)
    specs = [
        (path, layer)
        for path, layer in walk_layers(config.model.layers, ("model", "layers"))
        if isinstance(layer, (Linear, Conv))
    ]
    results = []
    # build_model constructs layers in config order, so the n-th Linear or Conv module is the
    # n-th such entry of the config.
    weighted = (nn.Linear, nn.Conv)
    modules = [module for _, module in model.named_modules() if isinstance(module, weighted)]
    for (path, spec), module in zip(specs, modules, strict=True):
        scheme, args = config.model.initializer(spec)
        if isinstance(module, nn.Conv):
            c_in, c_out, kernel = module.in_channels, module.out_channels, module.kernel_size
            resolved = theory(scheme, c_in, c_out, kernel=kernel, **args)
        else:
            resolved = theory(scheme, module.in_features, module.out_features, **args)
        stats = measure(resolved, module.weight.numpy(), seed=config.seed, bins=bins)
        results.append(LinearLayerStats(name=dotted(path), stats=stats))
    return results
