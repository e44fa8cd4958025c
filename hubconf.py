"""torch.hub entry points of this repository. Nothing is downloaded: a checkpoint
is a local file or run directory you name.

    import torch
    net = torch.hub.load("path/to/this/repo", "alexnet_towers", source="local",
                         checkpoint="runs/1cnn", devices="cpu")
    net.mean, net.classes          # the mean image (3×256×256, 0–255) and class list it was trained with

Without `checkpoint` the untrained network of a profile is built
(`profile="paper"` or `"cuda-convnet"`, `num_classes=1000`, and any
AlexNetConfig field as a keyword). Checkpoints are read with
`torch.load(weights_only=True)`: a file that would run code is refused.
"""

dependencies = ["torch", "numpy", "PIL"]


def alexnet_towers(checkpoint=None, devices=None, profile="paper", **config):
    """The two-tower AlexNet of the paper (§3.5), towers on `devices` (e.g. "cuda:0,cuda:1",
    "cpu"; default: what exists), in eval mode when loaded from a checkpoint."""
    from alexnet.config import AlexNetConfig
    from alexnet.engine import load_model
    from alexnet.model import AlexNet
    from alexnet.predict import dataset_of

    if checkpoint is None:
        return AlexNet(AlexNetConfig.from_profile(profile, **config), devices)
    if config:
        raise ValueError(f"{sorted(config)}: a checkpoint's network is built from its own config; "
                         "pass these only without checkpoint=")
    model, ck, path = load_model(checkpoint, devices)
    try:
        model.mean, model.classes = dataset_of(ck, path)
    except ValueError:  # an older checkpoint without its mean image: the network alone
        model.mean, model.classes = None, None
    return model
