"""Model zoo: classic architectures as Sequential models, with the published layer structure
and parameter counts."""
from . import layers as L
from .model import Sequential

__all__ = ["lenet5", "MODELS"]


def lenet5(num_classes=10, input_shape=(1, 28, 28)):
    """LeNet-5 as in DESIGN.md (ReLU and max pooling, 'same'-padded first conv for 28x28 MNIST):
    61,706 parameters at 10 classes."""
    return Sequential([
        L.Conv2d(input_shape[0], 6, 5, padding=2), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(6, 16, 5), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
        L.Linear(16 * 5 * 5, 120), L.ReLU(), L.Linear(120, 84), L.ReLU(), L.Linear(84, num_classes),
    ], input_shape=input_shape, name="lenet5")


MODELS = {"lenet5": lenet5}
