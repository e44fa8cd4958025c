"""A faithful, runnable reproduction of AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012)."""

__version__ = "0.1.0"
__all__ = ["AlexNet", "AlexNetConfig"]


def __getattr__(name):
    # Lazy, so that `python -m alexnet.model` does not import the module twice.
    if name == "AlexNet":
        from .model import AlexNet
        return AlexNet
    if name == "AlexNetConfig":
        from .config import AlexNetConfig
        return AlexNetConfig
    raise AttributeError(name)
