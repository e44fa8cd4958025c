import pytest

from alexnet.data.prepare import prepare
from alexnet.data.sources import ilsvrc2012
from alexnet.data.synthetic import write_synthetic_ilsvrc

TINY = dict(classes=4, train_per_class=12, val_per_class=4, seed=7)


@pytest.fixture(scope="session")
def tiny_archives(tmp_path_factory):
    """A tiny synthetic dataset in the ILSVRC-2012 archive format."""
    return write_synthetic_ilsvrc(tmp_path_factory.mktemp("ilsvrc"), progress=False, **TINY)


@pytest.fixture(scope="session")
def tiny_cache(tiny_archives, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "tiny"
    prepare(ilsvrc2012(tiny_archives), out, workers=2, progress=False)
    return out
