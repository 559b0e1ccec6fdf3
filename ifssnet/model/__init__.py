"""The IFSS-Net network (PyTorch), split by part.

``config``: :class:`IFSSNetConfig`; ``layers``: fast-form building blocks; ``encoder``: the twin
encoder (one module, two streams); ``fusion``: global feature matching; ``convlstm``: Bi-ConvLSTM
with one shared cell; ``decoder``: transposed convs + refinement modules; ``net``: :class:`IFSSNet`;
``checkpoint``: safe save/load.

Importing this package imports torch. Slicer modules import it lazily.
"""
from .checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from .config import IFSSNetConfig
from .convlstm import detach_state
from .net import IFSSNet, count_parameters, flops_per_window

__all__ = ["IFSSNetConfig", "IFSSNet", "count_parameters", "flops_per_window", "detach_state",
           "save_checkpoint", "load_checkpoint", "FORMAT_VERSION"]
