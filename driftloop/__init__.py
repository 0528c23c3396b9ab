"""driftloop: batch image classification that watches its inputs for drift and retrains itself."""

__version__ = "0.1.0"
