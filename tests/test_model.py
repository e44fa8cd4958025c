"""The network pinned to the paper: sizes, parameter counts, which tower reads
which (§3.2, Figure 2), initialization (§5) and device placement."""

import pytest
import torch

import alexnet.model as model_mod
from alexnet.config import AlexNetConfig
from alexnet.model import AlexNet

TOWER_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_two_towers():
    assert n_params(AlexNet(AlexNetConfig.from_profile("paper"), devices="cpu")) == 60_965_224


def test_parameter_count_one_tower_footnote2():
    model = AlexNet(AlexNetConfig.from_profile("paper", towers=1), devices="cpu")
    assert n_params(model) == 59_798_312
    t = model.towers[0]
    assert [t.conv1.out_channels, t.conv2.out_channels, t.conv3.out_channels,
            t.conv4.out_channels, t.conv5.out_channels] == [48, 128, 192, 192, 256]
    assert t.fc6.out_features == t.fc7.out_features == 4096


def test_cuda_convnet_profile_has_same_parameters():
    assert n_params(AlexNet(AlexNetConfig.from_profile("cuda-convnet"), devices="cpu")) == 60_965_224


def capture_outputs(model):
    """Forward hooks recording each weight layer's output, keyed 't0.conv1', ..., 'fc8'."""
    outs, hooks = {}, []
    for i, tower in enumerate(model.towers):
        for name, layer in tower.weight_layers().items():
            hooks.append(layer.register_forward_hook(
                lambda m, inp, out, key=f"t{i}.{name}": outs.__setitem__(key, out)))
    hooks.append(model.fc8.register_forward_hook(lambda m, inp, out: outs.__setitem__("fc8", out)))
    return outs, hooks


@pytest.mark.parametrize("crop", [224, 227])
def test_spatial_sizes(crop):
    model = AlexNet(AlexNetConfig.from_profile("paper", crop_size=crop), devices="cpu").eval()
    outs, _ = capture_outputs(model)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, crop, crop))
        pooled = model.towers[0].lower(torch.randn(2, 3, crop, crop))
    assert outs["t0.conv1"].shape == (2, 48, 55, 55)
    assert outs["t0.conv2"].shape == (2, 128, 27, 27)
    assert pooled.shape == (2, 128, 13, 13)
    for name, c in [("conv3", 192), ("conv4", 192), ("conv5", 128)]:
        assert outs[f"t1.{name}"].shape == (2, c, 13, 13)
    assert model.towers[0].fc6.in_features == 2 * 128 * 6 * 6  # pool3 is 6×6
    assert logits.shape == (2, 1000)
    assert model.features(torch.randn(2, 3, crop, crop)).shape == (2, 4096)


def test_224_padding_rule_reads_zeros_past_the_edge():
    """conv1 on 224 equals conv1 on the image padded right/bottom with 3 zeros (2012 code)."""
    model = AlexNet(devices="cpu")
    conv1 = model.towers[0].conv1
    x = torch.randn(1, 3, 224, 224)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3))
    outs, _ = capture_outputs(model)
    model.eval()
    with torch.no_grad():
        model(x)
        assert torch.equal(outs["t0.conv1"], conv1(padded))


# Autograd check of Figure 2's wiring: (target layer of tower b, source layer of tower a).
INDEPENDENT = [("conv2", "conv1"), ("conv4", "conv3"), ("conv5", "conv4")]
DEPENDENT = [("conv3", "conv2"), ("fc6", "conv5"), ("fc7", "fc6"), ("fc8", "fc7")]


@pytest.mark.parametrize("a,b", [(0, 1), (1, 0)])
def test_tower_isolation(a, b):
    torch.manual_seed(0)
    model = AlexNet(devices="cpu").eval()
    outs, _ = capture_outputs(model)
    model(torch.randn(2, 3, 224, 224))

    def grad(target, source):
        g = torch.autograd.grad(outs[target].sum(), outs[source], retain_graph=True, allow_unused=True)[0]
        return 0.0 if g is None else g.abs().sum().item()

    for tgt, src in INDEPENDENT:
        assert grad(f"t{b}.{tgt}", f"t{a}.{src}") == 0.0, f"tower {b} {tgt} must not read tower {a} {src}"
        assert grad(f"t{b}.{tgt}", f"t{b}.{src}") > 0.0  # the check can fail: own tower does flow
    for tgt, src in DEPENDENT:
        key = "fc8" if tgt == "fc8" else f"t{b}.{tgt}"
        assert grad(key, f"t{a}.{src}") > 0.0, f"{key} must read tower {a} {src}"


def test_lrn_never_mixes_towers():
    """Perturb one of tower 0's conv1 maps: tower 1's LRN'd maps stay bit-identical."""
    torch.manual_seed(0)
    model = AlexNet(devices="cpu").eval()
    t0, t1 = model.towers
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = t1.norm1(t1.act(t1.conv1(t1.pad1(x))))
        t0.conv1.weight[47] += 1.0  # tower 0's last map, adjacent to tower 1's first in a 96-map view
        after = t1.norm1(t1.act(t1.conv1(t1.pad1(x))))
        assert torch.equal(before, after)
        assert t1.lower(x).shape[1] == 128 and t1.norm1.__class__.__name__ == "LocalResponseNorm"


def test_exchange_used_at_exactly_the_four_connection_points(monkeypatch):
    calls = []
    real = model_mod.exchange

    def recording(tensors, device, *, at):
        calls.append((at, len(tensors)))
        return real(tensors, device, at=at)

    monkeypatch.setattr(model_mod, "exchange", recording)
    model = AlexNet(devices="cpu").eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert sorted(set(at for at, _ in calls)) == ["conv3", "fc6", "fc7", "fc8"]
    # each tower gathers both towers' maps at conv3, fc6, fc7; fc8 (on devices[0]) once
    assert [at for at, _ in calls] == ["conv3"] * 2 + ["fc6"] * 2 + ["fc7"] * 2 + ["fc8"]
    assert all(n == 2 for _, n in calls)


def test_placement_with_meta_second_device():
    model = AlexNet(devices=("cpu", "meta"))
    for p in model.towers[0].parameters():
        assert p.device.type == "cpu"
    for p in model.towers[1].parameters():
        assert p.device.type == "meta"
    assert model.fc8.weight.device.type == "cpu"
    assert model.devices == (torch.device("cpu"), torch.device("meta"))


def test_bad_device_is_refused_with_a_message():
    with pytest.raises(ValueError, match="does not exist"):
        AlexNet(devices=("cpu", "cuda:7"))
    with pytest.raises(ValueError, match="not a device name"):
        AlexNet(devices=("cpu", "gpu-zero"))


@pytest.mark.parametrize("profile,std345", [("paper", 0.01), ("cuda-convnet", 0.03)])
def test_init_statistics(profile, std345):
    torch.manual_seed(0)
    model = AlexNet(AlexNetConfig.from_profile(profile), devices="cpu")
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for tower in model.towers:
        for name in TOWER_LAYERS:
            layer = getattr(tower, name)
            expected = std345 if name in ("conv3", "conv4", "conv5") else 0.01
            w = layer.weight.detach()
            assert abs(w.std().item() - expected) < 0.03 * expected, name
            assert abs(w.mean().item()) < 0.05 * expected, name
            assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name
    assert abs(model.fc8.weight.std().item() - 0.01) < 3e-4
    assert torch.all(model.fc8.bias == 0)


def test_same_seed_same_weights_whatever_the_devices():
    torch.manual_seed(3)
    a = AlexNet(devices="cpu")
    torch.manual_seed(3)
    b = AlexNet(devices=("cpu", "meta"))
    assert torch.equal(a.towers[0].conv1.weight, b.towers[0].conv1.weight)
    assert torch.equal(a.fc8.weight, b.fc8.weight)


def test_a_net_built_from_weights_holds_them_and_draws_nothing():
    """What loading a checkpoint does: the given weights, no initial draw (the
    global random state as it was), the same logits; a missing key is an error."""
    torch.manual_seed(3)
    a = AlexNet(devices="cpu").eval()
    state = torch.get_rng_state()
    b = AlexNet(devices="cpu", weights={k: v.clone() for k, v in a.state_dict().items()}).eval()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.device.type == "cpu" and p.requires_grad for p in b.parameters())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    with pytest.raises(RuntimeError, match="Missing key"):
        AlexNet(devices="cpu", weights={k: v for k, v in a.state_dict().items() if k != "fc8.bias"})


def test_golden_logits():
    """Fixed seed → fixed logits (torchvision's _assert_expected habit): any change
    to wiring, init or layer order moves these numbers."""
    torch.manual_seed(0)
    model = AlexNet(devices="cpu").eval()
    x = torch.linspace(-1, 1, 3 * 224 * 224).reshape(1, 3, 224, 224) * 100
    with torch.no_grad():
        logits = model(x)
    expected = torch.tensor(GOLDEN_LOGITS_FIRST5)
    torch.testing.assert_close(logits[0, :5], expected, rtol=1e-4, atol=1e-5)


# Recorded with torch 2.14.1 on CPU (seed 0, paper profile); float32 rounding tolerance.
GOLDEN_LOGITS_FIRST5 = [-0.13150672614574432, -0.340326189994812, 0.04595169797539711,
                        -0.42445722222328186, 0.22188660502433777]


@pytest.mark.parametrize("profile", ["paper", "cuda-convnet"])
def test_extra_conv6_reads_both_towers_as_in_the_2012_code(profile, monkeypatch):
    """1 CNN*: conv6a/conv6b of layers-146-2012-2011 read both towers' pool3
    (128 filters 3×3 each), initW 0.03, initB 1; a fifth connection point."""
    torch.manual_seed(0)
    model = AlexNet(AlexNetConfig.from_profile(profile, extra_conv6=True), devices="cpu").eval()
    assert n_params(model) == 60_965_224 + 2 * (3 * 3 * 256 * 128 + 128)
    for t in model.towers:
        assert t.conv6.in_channels == 256 and t.conv6.out_channels == 128
        assert abs(t.conv6.weight.std().item() - 0.03) < 0.001 and torch.all(t.conv6.bias == 1)
    calls = []
    real = model_mod.exchange
    monkeypatch.setattr(model_mod, "exchange", lambda ts, d, *, at: calls.append(at) or real(ts, d, at=at))
    x = torch.randn(1, 3, 224, 224, requires_grad=True)
    with torch.no_grad():
        model(x)
    assert calls == ["conv3"] * 2 + ["conv6"] * 2 + ["fc6"] * 2 + ["fc7"] * 2 + ["fc8"]
    # tower 1's conv6 output depends on tower 0's pool3: its gradient reaches tower 0's conv5
    model.zero_grad()
    pool3 = []
    hook = model.towers[0].pool.register_forward_hook(lambda m, i, o: pool3.append(o))
    model.hidden(x)
    hook.remove()
    out = model.towers[1].act(model.towers[1].conv6(torch.cat([pool3[-1], pool3[-1] * 0], 1)))
    out.sum().backward()
    assert model.towers[0].conv5.weight.grad.abs().sum() > 0


def test_ablation_switches_change_the_net():
    no_lrn = AlexNet(AlexNetConfig.from_profile("paper", lrn=False), devices="cpu")
    assert isinstance(no_lrn.towers[0].norm1, torch.nn.Identity)
    z2 = AlexNet(AlexNetConfig.from_profile("paper", pool_kernel=2), devices="cpu")
    assert z2.towers[0].pool.kernel_size == 2
    tanh = AlexNet(AlexNetConfig.from_profile("paper", activation="tanh"), devices="cpu")
    assert isinstance(tanh.towers[0].act, torch.nn.Tanh)
    with torch.no_grad():
        assert z2.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_summary_table_lists_layers_and_total():
    from alexnet.model import summary
    text = summary(AlexNet(devices="cpu"))
    assert "60,965,224" in text and "tower1.conv3" in text and "192×13×13" in text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("devices,streams", [(("cuda:0", "cpu"), False), (("cuda:0", "cuda:0"), False),
                                             (("cuda:0", "cuda:0"), True)])
def test_mixed_devices_match_cpu_in_float64(devices, streams):
    torch.manual_seed(0)
    ref = AlexNet(devices="cpu").double().eval()
    torch.manual_seed(0)
    mixed = AlexNet(devices=devices, tower_streams=streams).double().eval()
    assert (mixed.streams is not None) == streams
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    expected = ref(x)
    expected.sum().backward()
    out = mixed(x.to(devices[0]))
    assert out.device == torch.device(devices[0])
    torch.testing.assert_close(out.detach().cpu(), expected.detach(), rtol=1e-9, atol=1e-12)
    out.sum().backward()
    for (n, p), (_, q) in zip(ref.named_parameters(), mixed.named_parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("devices", [("cuda:0", "cpu"), ("cuda:0", "cuda:0")])
def test_mixed_devices_match_cpu_in_float32(devices):
    """The faithful float32 arithmetic (TF32 off): logits and every gradient within
    float32 rounding of the all-CPU model's, relative to each tensor's largest value.
    cuDNN's float32 convolution algorithms sum in other orders than the CPU's: on an
    H200 (torch 2.11) conv2's weight gradient differed by 1.0e-3 of its largest value."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    ref = AlexNet(devices="cpu").eval()
    torch.manual_seed(0)
    mixed = AlexNet(devices=devices).eval()
    x = torch.randn(4, 3, 224, 224) * 50
    expected = ref(x)
    expected.sum().backward()
    out = mixed(x.to(devices[0]))
    out.sum().backward()

    def close(a, b, what):
        assert (a.cpu() - b).abs().max() <= 4e-3 * b.abs().max() + 1e-7, what
    close(out.detach(), expected.detach(), "logits")
    for (n, p), (_, q) in zip(ref.named_parameters(), mixed.named_parameters()):
        close(q.grad, p.grad, n)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tower_streams_training_steps_equal_one_stream():
    """Three float32 SGD steps with dropout, towers on one GPU: one stream per
    tower gives the weights of the single-stream model (cuDNN autotuning off)."""
    from alexnet.optim import PaperSGD
    torch.backends.cudnn.benchmark = False
    nets = []
    for streams in (False, True):
        torch.manual_seed(0)
        net = AlexNet(devices="cuda:0", tower_streams=streams)
        opt = PaperSGD(net.parameters(), lr=0.01)
        torch.manual_seed(1)
        for _ in range(3):
            x = torch.randn(16, 3, 224, 224, device="cuda:0")
            y = torch.randint(0, 1000, (16,), device="cuda:0")
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        nets.append(net)
    for (n, p), (_, q) in zip(nets[0].named_parameters(), nets[1].named_parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=n)


def test_tower_streams_are_ignored_off_a_shared_gpu():
    assert AlexNet(devices="cpu", tower_streams=True).streams is None


@pytest.mark.parametrize("profile", ["paper", "cuda-convnet"])
def test_faithful_speedups_give_the_plain_logits_and_gradients(profile):
    """The faithful mode's LRN against torch's plain one, through the whole net:
    logits and every parameter's gradient agree to float32 rounding."""
    from alexnet.layers import LocalResponseNorm
    cfg = AlexNetConfig.from_profile(profile, num_classes=10)
    x = torch.randn(2, 3, 224, 224) * 60
    y = torch.tensor([3, 7])
    results = []
    for plain in (True, False):
        torch.manual_seed(0)
        net = AlexNet(cfg, devices="cpu").eval()  # eval: no dropout draw, the same function both times
        lrns = [m for m in net.modules() if isinstance(m, LocalResponseNorm)]
        assert len(lrns) == 4
        for m in lrns:
            m.plain = plain
        logits = net(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5 * l0.abs().max().item())
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-5 * g0[n].abs().max().item(), msg=n)
