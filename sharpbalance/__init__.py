"""Sharpness-diversity trade-off in deep ensembles, and SharpBalance, as an importable, tested, notebook-documented kit

Modules:

- `sharpbalance.data`: Built-in digits and MNIST-1D, CIFAR-10/100 and Tiny-ImageNet from disk, their corrupted (OOD) versions, and a batch iterator whose order is fixed by a generator.
- `sharpbalance.models`: A registry of the networks an ensemble member can be: small CPU models for the built-in data, and the paper's CIFAR ResNet-18 and Wide-ResNet for real benchmarks.
- `sharpbalance.sam`: Sharpness-aware minimisation (SAM / ASAM) as a wrapper around any torch optimizer, and SharpBalance's mixed step: SAM on the samples of a subset, plain ERM on the rest, in one update.
- `sharpbalance.theory`: The paper's linear-regression model of the sharpness-diversity trade-off: closed forms from random-matrix theory, a seeded simulation that checks them, and the four experiments of the official notebook."""

__version__ = "0.1.0"
