"""geossl: self-supervised learning on remote-sensing imagery.

Built on TorchGeo (datasets, samplers), PyTorch Lightning (training) and timm (backbones).
"""

__version__ = "0.1.0"
