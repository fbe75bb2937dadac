"""nas-mnist: find the best small CNN for MNIST under a parameter budget."""

__version__ = "0.1.0"

from nas_mnist.spec.arch import ArchConfig, ConvSpec, Head, Transition
from nas_mnist.spec.recipe import Recipe

__all__ = ["ArchConfig", "ConvSpec", "Head", "Recipe", "Transition", "__version__"]
