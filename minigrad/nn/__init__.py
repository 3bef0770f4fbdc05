"""Neural-network building blocks: Module, Parameter, layers and normalization."""

from minigrad.nn import functional
from minigrad.nn.module import Module, Parameter

# -- normalization layers (minigrad/nn/norm.py) --
# -- end normalization --

# -- other layers and initialisation (minigrad/nn/layers.py, minigrad/nn/init.py) --
# -- end layers --
