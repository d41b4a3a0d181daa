"""Kubepredict: train and serve scikit-learn models as serverless functions."""

__version__ = "0.1.0"
