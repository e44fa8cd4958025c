import pytest

from alexnet.config import AlexNetConfig


def test_profiles_differ_where_paper_and_2012_code_differ():
    paper = AlexNetConfig.from_profile("paper")
    cc = AlexNetConfig.from_profile("cuda-convnet")
    assert (paper.lrn_alpha_over_size, cc.lrn_alpha_over_size) == (False, True)
    assert (paper.lrn1_before_relu, cc.lrn1_before_relu) == (False, True)
    assert (paper.samemap_norm, cc.samemap_norm) == (False, True)
    assert (paper.init_std_conv345, cc.init_std_conv345) == (0.01, 0.03)
    assert (paper.bias_lr_mult, cc.bias_lr_mult) == (1.0, 2.0)
    assert (paper.bias_weight_decay, cc.bias_weight_decay) == (True, False)
    assert (paper.crop_chunk, cc.crop_chunk) == (1, 32)
    for c in (paper, cc):  # shared: §3.3 constants, §5 learning
        assert (c.lrn_size, c.lrn_alpha, c.lrn_beta, c.lrn_k) == (5, 1e-4, 0.75, 2.0)
        assert (c.batch_size, c.momentum, c.weight_decay, c.lr) == (128, 0.9, 5e-4, 0.01)
        assert c.crop_size == 224 and c.dropout == 0.5 and c.pool_kernel == 3


def test_overrides_and_round_trip():
    cfg = AlexNetConfig.from_profile("cuda-convnet", lrn=False, towers=1)
    assert cfg.profile == "cuda-convnet" and not cfg.lrn and cfg.towers == 1
    assert AlexNetConfig.from_dict(cfg.to_dict()) == cfg
    # a config saved by an earlier version, with fields nothing read, still loads
    assert AlexNetConfig.from_dict({**cfg.to_dict(), "image_size": 256, "ten_crop_test": True}) == cfg


@pytest.mark.parametrize("bad", [dict(crop_size=200), dict(towers=3), dict(pool_kernel=4),
                                 dict(activation="sigmoid"), dict(dropout=1.0), dict(epochs=-1),
                                 dict(batch_size=0)])
def test_bad_values_are_refused_naming_the_field(bad):
    (name, value), = bad.items()
    with pytest.raises(ValueError, match=name):
        AlexNetConfig.from_profile("paper", **bad)


def test_unknown_profile_and_field():
    with pytest.raises(ValueError, match="unknown profile"):
        AlexNetConfig.from_profile("caffe")
    with pytest.raises(ValueError, match="unknown config field"):
        AlexNetConfig.from_profile("paper", lrm=False)
    with pytest.raises(ValueError, match="does not know"):
        AlexNetConfig.from_dict({**AlexNetConfig().to_dict(), "future_field": 1})
