"""mcq: CLIP-pretrained mobile encoders turned into on-device dense-prediction models."""

__version__ = "0.1.0"
