"""Learning-rate schedules of §5, per profile.

- `paper` (§5): "The heuristic which we followed was to divide the learning
  rate by 10 when the validation error rate stopped improving with the current
  learning rate. The learning rate was initialized at 0.01 and reduced three
  times prior to termination." Our reading of "stopped improving with the
  current learning rate": ε is divided by 10 after `patience` consecutive
  epochs without a new best validation top-1 error *at the current ε*; after
  each division the count and the best restart, so the first epoch at the
  new ε sets the new reference (it is not required to beat the error reached
  at the old ε at once); at most `drops` divisions. "Stopped improving"
  presupposes improving: epochs are counted only once the error has beaten
  that reference at the current ε, so a run that sits at chance for its first
  epochs, as this net often does from its N(0, 0.01) start, does not have ε
  divided before it has learned anything (at 10 epochs, where patience is one
  epoch, two of six seed replicates did; results/history/synthetic-cpu-full-paper/). Patience is
  `cfg.lr_patience` for 90 epochs, scaled proportionally for shorter runs, and
  never below `cfg.lr_patience_min` (2): the paper's 50,000 validation images
  measure an epoch's error to about 0.2 points, the embedded sets' 200 or 2,000
  to about 3 or 1, so one epoch that fails to beat the best is as likely noise
  as a plateau. With a floor of one epoch such epochs divided ε for good and
  left replicates of one configuration between 8.5% and 45.5% error
  (results/history/synthetic-cpu-full-paper/README.md: with a floor of two, the six
  replicates went from 23.3 ± 15.3 to 13.4 ± 5.5, the two worst seeds from
  45.5 and 39.5 to 21.5 and 17.0).
- `cuda-convnet` (layer-params-145, comments): the weights' ε ÷10 after
  epochs 25, 51 and 79; conv1's weight ε to 1e-5 after 67 and to 0 after 72;
  colour noise off from 67. The biases keep ε_B = 0.02 throughout (the log
  lowers only epsW; the final file has epsB = 0.02 beside epsW = 1e-5), except
  conv1's, which the final file has at 0: our reading sets it to 0 with conv1's
  weights after 72. For a run of E < 90 epochs every milestone is scaled by
  E/90, and none falls before epoch 1: the first epoch always trains at the
  initial ε.

- `step` (a deviation from §5, for short runs that are compared with one another:
  reproduce/experiments.py, FIXED_SCHEDULES): ε ÷ 10 after each epoch of
  `lr_step_epochs`, whatever the validation error does, so that every run of a
  comparison trains at the same ε at every epoch.

Epochs are counted from 0 here: "after epoch 25" of the 2012 log is index 25.
"""

from __future__ import annotations

import math

from .config import AlexNetConfig

PAPER_EPOCHS = 90


def _scaled(epoch: float, epochs: int) -> int:
    """A milestone of the 90-epoch run in a run of `epochs` (at least 1)."""
    return max(1, int(round(epoch * epochs / PAPER_EPOCHS))) if epochs < PAPER_EPOCHS else int(epoch)


class PlateauSchedule:
    def __init__(self, epochs: int, patience: int = 5, drops: int = 3, factor: float = 10.0,
                 min_patience: int = 2):
        self.patience = max(min_patience, _scaled(patience, epochs))
        self.drops, self.factor = drops, factor
        self.best, self.bad_epochs, self.done = math.inf, 0, 0
        self.improved = False  # has the error beaten the first epoch's at this ε?

    def factors(self, epoch: int) -> dict[str, float]:
        f = self.factor ** -self.done
        return {"conv1.weight": f, "conv1.bias": f, "weight": f, "bias": f}

    def lighting(self, epoch: int) -> bool:
        return True

    def end_epoch(self, epoch: int, val_error: float) -> str | None:
        """Record epoch's validation error; returns a note when ε is divided."""
        if val_error < self.best:
            self.improved = self.improved or self.best < math.inf  # beating the reference, not setting it
            self.best, self.bad_epochs = val_error, 0
            return None
        if not self.improved:  # not yet improving at this ε (e.g. still at chance): nothing has stopped
            return None
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.done < self.drops:
            note = (f"validation error {val_error:.4f} has not beaten {self.best:.4f} (the best at this ε) "
                    f"for {self.patience} epoch(s): ε ÷ {self.factor:g}")
            self.done, self.bad_epochs, self.best, self.improved = self.done + 1, 0, math.inf, False
            return note
        return None

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "done": self.done,
                "improved": self.improved}

    def load_state_dict(self, s: dict) -> None:
        self.best, self.bad_epochs, self.done = s["best"], s["bad_epochs"], s["done"]
        self.improved = s.get("improved", True)  # checkpoints before this rule counted every epoch


class _Fixed:
    """A schedule set in advance: the validation error decides nothing, and there is no state to save."""

    def end_epoch(self, epoch: int, val_error: float) -> str | None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, s: dict) -> None:
        pass


class CudaConvnetSchedule(_Fixed):
    """The recorded run of layers-145 (reproduce/PAPER.md, §5 "2012 code")."""

    DROPS = (25, 51, 79)
    CONV1_SMALL, CONV1_ZERO, NOISE_OFF = 67, 72, 67

    def __init__(self, epochs: int, base_lr: float = 0.01):
        self.epochs, self.base_lr = epochs, base_lr
        self.m = lambda e: _scaled(e, epochs)  # noqa: E731

    def factors(self, epoch: int) -> dict[str, float]:
        f = 10.0 ** -sum(epoch >= self.m(d) for d in self.DROPS)
        c1, c1_bias = f, 1.0
        if epoch >= self.m(self.CONV1_ZERO):
            c1 = c1_bias = 0.0  # "set epsw to 0 on conv1"; the final file: conv1 epsB=0.0
        elif epoch >= self.m(self.CONV1_SMALL):
            c1 = 1e-5 / self.base_lr  # "set epsw to 0.00001 ... on conv1"
        return {"conv1.weight": c1, "conv1.bias": c1_bias, "weight": f, "bias": 1.0}

    def lighting(self, epoch: int) -> bool:
        return epoch < self.m(self.NOISE_OFF)


class FinetuneSchedule(CudaConvnetSchedule):
    """1 CNN*'s fine-tuning on ILSVRC-2012 from the Fall 2011 pre-training, as the
    2012 code recorded it (layer-params-146-2012-2011.cfg, comments; reproduce/PAPER.md):
    weights start at ε 0.001 and conv1's at 0.0001; the fresh fc8 ("fc1000") at 0.01
    (the log: after 300 batches; here from the start) until epoch 9, then 0.001;
    conv1 to 1e-5 at epoch 5 and to 0 at 7 (its bias with it, as the final file has
    it); all weights to 1e-4 at 22 and 1e-5 at 42; colour noise off from 38; killed
    at 54. Biases keep their ε (epsB 0.02 in every other layer of the final file).
    Factors are relative to ε = 0.01; a run of E < 54 epochs scales every epoch by E/54."""

    RECORDED = 54  # "epoch 54: killed"

    def __init__(self, epochs: int, base_lr: float = 0.01):
        super().__init__(epochs, base_lr)
        self.m = lambda e: max(1, int(round(e * epochs / self.RECORDED))) if epochs < self.RECORDED else e  # noqa: E731

    def factors(self, epoch: int) -> dict[str, float]:
        e = lambda at: epoch >= self.m(at)  # noqa: E731
        w = 0.1 * (0.1 if e(22) else 1.0) * (0.1 if e(42) else 1.0)  # 0.001 → 0.0001 → 0.00001
        conv1 = 0.0 if e(7) else (1e-3 if e(5) else 1e-2)  # 0.0001 → 0.00001 → 0
        return {"conv1.weight": conv1, "conv1.bias": 0.0 if e(7) else 1.0, "weight": w,
                "fc8.weight": min(w, 0.1) if e(9) else 1.0, "bias": 1.0}

    def lighting(self, epoch: int) -> bool:
        return epoch < self.m(38)


class StepSchedule(_Fixed):
    """ε ÷ `factor` after each epoch of `after` (counted from 1: after=(10,) trains epochs 0–9 at ε and
    10 onwards at ε/10), every group alike; the validation error decides nothing."""

    def __init__(self, after: tuple[int, ...], factor: float = 10.0):
        self.after, self.factor = tuple(after), factor

    def factors(self, epoch: int) -> dict[str, float]:
        f = self.factor ** -sum(epoch >= a for a in self.after)
        return {"conv1.weight": f, "conv1.bias": f, "weight": f, "bias": f}

    def lighting(self, epoch: int) -> bool:
        return True


def make_schedule(cfg: AlexNetConfig):
    if cfg.lr_schedule == "step":
        return StepSchedule(cfg.lr_step_epochs)
    if cfg.lr_schedule == "finetune":
        return FinetuneSchedule(cfg.epochs, cfg.lr)
    if cfg.lr_schedule == "cuda-convnet":
        return CudaConvnetSchedule(cfg.epochs, cfg.lr)
    return PlateauSchedule(cfg.epochs, cfg.lr_patience, cfg.lr_drops, min_patience=cfg.lr_patience_min)


def same_course(a: AlexNetConfig, b: AlexNetConfig, epochs: int) -> bool:
    """Whether configs `a` and `b` (runs of different lengths) set ε and colour noise
    alike in their first `epochs` epochs, and, for the plateau rule, decide alike
    from any state: then a checkpoint of `a` after `epochs` epochs continues
    exactly as a run of `b` from the start would have (a finished run trained
    longer). The plateau rule's patience is the only place its length enters;
    the recorded 2012 schedules move every milestone with the length."""
    sa, sb = make_schedule(a), make_schedule(b)
    if type(sa) is not type(sb):
        return False
    rule = lambda s: (s.patience, s.drops, s.factor)  # noqa: E731
    if isinstance(sa, PlateauSchedule) and rule(sa) != rule(sb):
        return False
    return all(sa.factors(e) == sb.factors(e) and sa.lighting(e) == sb.lighting(e) for e in range(epochs))


def warmup(cfg: AlexNetConfig, step: int, steps_per_epoch: int) -> float:
    """The ε factor of step `step` (counted from 0) under `lr_warmup_epochs` W, a deviation from §5
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): (step + 1)/n over the first n = W × steps per
    epoch steps, then 1. §5 has none: 1 throughout."""
    n = round(cfg.lr_warmup_epochs * steps_per_epoch)
    return (step + 1) / n if step < n else 1.0


def apply(schedule, optimizer, cfg: AlexNetConfig, epoch: int, factor: float = 1.0) -> dict[str, float]:
    """Set every group's ε for `epoch` (times `factor`: the warmup's); returns {group: ε}.

    §5 keeps ε inside the velocity, so a new ε reaches the velocity one gradient at a time (after
    ε ÷ 10 the steps built at the old ε carry on: reproduce/PAPER.md, §5). With `velocity_rescale`, a
    deviation, each group's velocity is scaled by new/old ε when ε changes, which is torch.optim.SGD's
    rule (ε outside the velocity)."""
    factors = schedule.factors(epoch)
    for g in optimizer.param_groups:
        new = cfg.lr * g["lr_mult"] * factors[g["name"]] * factor
        if cfg.velocity_rescale and g["lr"] > 0 and new != g["lr"]:
            for p in g["params"]:
                if "velocity" in optimizer.state[p]:
                    optimizer.state[p]["velocity"].mul_(new / g["lr"])
        g["lr"] = new
    return {g["name"]: g["lr"] for g in optimizer.param_groups}
