"""Replay a run's steps up to step N: in the run's own arithmetic, and in float64 on the CPU.

    python -m tools.replay runs/1cnn                 # the step recorded in runs/1cnn/nonfinite.json
    python -m tools.replay runs/1cnn --step 40       # any step
    python -m tools.replay runs/1cnn --devices cpu   # the run's arithmetic on another device

It starts from the run's last checkpoint before step N (or from its initial
weights, rebuilt from the seed or its --init-from, when there is none), with
the run's own options (config.json: decoder, mode, compile, train_batches),
rebuilds every batch from the seed, epoch and batch index (the loader's draws
are a pure function of them), crosses epochs as the run did (the schedule sees
each finished epoch's validation error from log.jsonl), and takes each step
twice in lockstep: once as the run did (its devices, dtype and mode), once in
float64 on the CPU with the same dropout masks. A torchrun job of K ranks is
replayed whole in one process: its global batch, with each rank's dropout masks
(drawn from (seed, tower, rank, step) as that rank drew them) on the rank's rows
r::K, so its losses are the job's to float32 rounding, not bit for bit (DDP
averages K per-rank means). It prints each step's loss in both, then every
layer's largest |output| and gradient norm at step N side by side, and a verdict:

- dynamics: the run's own replay is non-finite and float64's loss is too, or above 2·ln C:
  ε, the data or the init, not the arithmetic;
- arithmetic: only the run's own replay is non-finite, float64 stays below 2·ln C: its
  dtype or device (float32 overflow, a kernel);
- dynamics, at the edge: float64 alone is non-finite, the run's own arithmetic is not;
- not reproduced: the run's loss was non-finite, neither replay's is: a fault outside the
  computation (corrupted input, a race), or nondeterminism;
- finite: no record of a non-finite loss at step N, and neither replay has one.

The report also goes to <run_dir>/replay-step<N>.json. Checkpoints are read with
weights_only=True. Exit status: 0 replayed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from alexnet import checkpoint
from alexnet.atomic import write_text
from alexnet.config import AlexNetConfig
from alexnet.diagnostics import LayerProbe, read_steps
from alexnet.engine import NONFINITE, Trainer, TrainOptions, dropout_seed, train_step
from alexnet.layers import keep_mask
from alexnet.model import AlexNet
from alexnet.optim import PaperSGD, param_groups
from alexnet.schedule import apply


def start_checkpoint(run_dir: Path, step: int) -> Path | None:
    """The run's newest checkpoint from before `step` (None: replay from the initial weights)."""
    before = [p for p in checkpoint.files(run_dir) if checkpoint.step_of(p) < step]
    return max(before, key=checkpoint.step_of) if before else None


def float64_twin(trainer: Trainer) -> tuple[AlexNet, PaperSGD]:
    """The trainer's net and optimizer (weights, velocities, ε) as float64 copies on the CPU."""
    net = AlexNet(trainer.cfg, ("cpu", "cpu"),
                  weights={k: v.detach().double().cpu() for k, v in trainer.net.state_dict().items()})
    opt = PaperSGD(param_groups(net, trainer.cfg), lr=trainer.cfg.lr, momentum=trainer.cfg.momentum,
                   weight_decay=trainer.cfg.weight_decay)
    opt.load_state_dict(trainer.opt.state_dict())  # casts the velocities to the twin's float64
    return net.train(), opt


def job_masks(trainer: Trainer, world_size: int) -> dict[str, torch.Tensor]:
    """The dropout masks of a torchrun job of `world_size` ranks at trainer.step, for its global batch:
    rank r's rows r::K hold the masks rank r drew (Trainer.seed_dropout, then drop6 and drop7 in turn)."""
    cfg, per_rank = trainer.cfg, trainer.cfg.batch_size // world_size
    dtype = torch.bfloat16 if trainer.speed.fast else torch.float32  # fc6 and fc7's output dtype
    masks = {}
    for i, tower in enumerate(trainer.net.towers):
        like = torch.empty(per_rank, cfg.fc_width, dtype=dtype, device=tower.device)
        drawn = []
        for rank in range(world_size):
            g = torch.Generator(tower.device).manual_seed(dropout_seed(cfg.seed, i, rank, trainer.step))
            drawn.append([keep_mask(like, 1.0 - cfg.dropout, g) for _ in ("drop6", "drop7")])
        for k, name in enumerate(("drop6", "drop7")):  # global row j: rank j % K, its row j // K
            masks[f"t{i}.{name}"] = torch.stack([d[k] for d in drawn], dim=1).flatten(0, 1)
    return masks


def verdict(run_loss: float, own: float, f64: float, classes: int) -> str:
    """What the two replays say about the run's loss at the step (the module's docstring lists the cases)."""
    f64_diverges = not math.isfinite(f64) or f64 > 2 * math.log(classes)
    if not math.isfinite(own):
        if f64_diverges:
            return "dynamics: the float64 replay diverges too (ε, data or init, not the arithmetic)"
        return "arithmetic: only the run's own dtype/device is non-finite; float64 stays below 2·ln C"
    if not math.isfinite(f64):
        recorded = "; the run's recorded loss was non-finite" if not math.isfinite(run_loss) else ""
        return ("dynamics, at the edge: float64 alone is non-finite at this step, the run's own arithmetic "
                f"is not{recorded}")
    if not math.isfinite(run_loss):
        return ("not reproduced: both replays stay finite at this step though the run's loss was not; "
                "a fault outside the computation (corrupted input, a race) or nondeterminism")
    return "finite: neither replay is non-finite at this step" + (
        f" (float64's loss {f64:.3g} is above 2·ln C: diverging)" if f64_diverges else "")


def run_options(info: dict, scratch: str, start: Path | None, devices) -> TrainOptions:
    """The run's own options (config.json's: its decoder, mode, compile, init_from, train_batches ...)
    as a replay into `scratch` needs them: from `start` (None: the initial weights, or init_from's),
    no loader processes, no progress bar, no logs of its own. `devices`: the run's unless given."""
    if "options" in info:
        recorded = TrainOptions.from_dict(info["options"])
    else:  # a run directory from before config.json recorded the options: its mode alone
        recorded = TrainOptions(cache=info["cache"], run_dir=scratch,
                                fast="NOT bit-faithful" in info.get("mode", ""))
    return dataclasses.replace(recorded, run_dir=scratch, devices=tuple(devices or info["devices"]),
                               resume=start, workers=0, progress=False, log_steps=False, tensorboard=False,
                               max_steps=0, print_freq=0)


def replay(run_dir: Path, step: int, devices=None, out=sys.stdout) -> dict:
    info = json.loads((run_dir / "config.json").read_text())
    cfg = AlexNetConfig.from_dict(info["config"])
    world_size = info.get("world_size", 1)  # a torchrun job's ranks, replayed in this one process
    start = start_checkpoint(run_dir, step)
    with tempfile.TemporaryDirectory() as scratch:
        opts = run_options(info, scratch, start, devices)
        trainer = Trainer(cfg, opts)
        if start is not None:
            trainer.resume()
    if step <= trainer.step:
        raise ValueError(f"step {step}: the replay starts after step {trainer.step}")
    ended = {h["epoch"]: h for h in read_steps(run_dir / "log.jsonl")}  # the epochs the run finished
    loader = trainer.train_loader

    def enter_epoch() -> dict:
        """The run's ε for trainer.epoch, as the schedule gave it after the finished epochs."""
        trainer.prepare_epoch()
        lrs = apply(trainer.schedule, trainer.opt, cfg, trainer.epoch)
        logged = ended.get(trainer.epoch + 1, {}).get("lr")
        if logged and any(abs(lrs[g] - logged[g]) > 1e-12 * logged[g] for g in logged):
            print(f"warning: epoch {trainer.epoch + 1}: ε {lrs} here, {logged} in the run's log", file=out)
        return lrs

    enter_epoch()
    net64, opt64 = float64_twin(trainer)  # with the epoch's ε
    own, twin = LayerProbe(trainer.net, record_masks=True), LayerProbe(net64)
    print(f"{run_dir}: replaying steps {trainer.step + 1}–{step} (from epoch {trainer.epoch + 1}) from "
          f"{start or 'the initial weights'}; the run's arithmetic on {', '.join(map(str, trainer.devices))} "
          f"({trainer.speed.label}) beside float64 on the CPU"
          + (f"; a job of {world_size} ranks as one process (to float32 rounding)" if world_size > 1 else ""),
          file=out)
    print(f"{'step':>6} {'epoch':>5} {'loss (run)':>14} {'loss (float64)':>16}", file=out)
    losses = []
    while trainer.step < step:
        for x, y in loader:
            trainer.seed_dropout()  # the run's masks at this step: from (seed, tower, rank, step)
            job = job_masks(trainer, world_size) if world_size > 1 and cfg.dropout > 0 else None
            own.replay = job  # a torchrun job's: each rank's masks on its rows
            trainer.warm_up()  # ε as the run set it before each step (the step counted from 0) ...
            trainer.warm_up(opt64)  # ... and the twin's with it
            trainer.step += 1
            s = train_step(trainer.forward, trainer.opt, x, y, trainer.speed).tolist()
            twin.replay = job or own.masks
            with torch.random.fork_rng(devices=[]):  # the twin's (replaced) dropout draws: not the run's RNG
                s64 = train_step(net64, opt64, x.detach().double().cpu(), y.cpu()).tolist()
            losses.append({"step": trainer.step, "epoch": trainer.epoch + 1, "run": s[0] / s[3],
                           "float64": s64[0] / s64[3]})
            print(f"{trainer.step:>6} {trainer.epoch + 1:>5} {losses[-1]['run']:>14.6g} "
                  f"{losses[-1]['float64']:>16.6g}", file=out)
            if trainer.step == step:
                break
        else:  # the epoch ended first: the schedule sees its validation error, as the run's did
            if trainer.epoch + 1 not in ended:
                raise ValueError(f"step {step}: past epoch {trainer.epoch + 1}, which the run's log does not "
                                 "record (the run never finished it)")
            trainer.schedule.end_epoch(trainer.epoch, ended[trainer.epoch + 1]["val_top1"])
            trainer.epoch += 1
            enter_epoch()
            apply(trainer.schedule, opt64, cfg, trainer.epoch)  # the twin's ε (and velocity) as the run's
    rows = {"run": own.row(), "float64": twin.row()}
    own.close()
    twin.close()
    print(f"\nstep {step}, layer by layer: largest |output| and gradient norm", file=out)
    print(f"{'layer':<10} {'|out| run':>12} {'|out| f64':>12} {'grad run':>12} {'grad f64':>12}", file=out)
    for name in rows["run"]["act_max"]:
        a, b = rows["run"], rows["float64"]
        print(f"{name:<10} {a['act_max'][name]:>12.4g} {b['act_max'][name]:>12.4g} "
              f"{a['grad_norm'][name]:>12.4g} {b['grad_norm'][name]:>12.4g}", file=out)
    recorded = json.loads((run_dir / NONFINITE).read_text()) if (run_dir / NONFINITE).exists() else {}
    if recorded.get("step") == step:
        run_loss, source = float(recorded["loss"]), NONFINITE
    else:  # no record of this step: the run's own replay stands for it
        run_loss, source = losses[-1]["run"], "not recorded: its own replay"
    v = verdict(run_loss, losses[-1]["run"], losses[-1]["float64"], cfg.num_classes)
    print(f"\nthe run's loss at step {step}: {run_loss:g} ({source})", file=out)
    print(f"verdict: {v}", file=out)
    report = {"run_dir": str(run_dir), "step": step, "start": str(start) if start else None,
              "devices": [str(d) for d in trainer.devices], "mode": trainer.speed.label,
              "decoder": opts.decoder, "world_size": world_size, "recorded_loss": run_loss, "losses": losses,
              "layers": rows, "verdict": v, "code_version": checkpoint.code_version()}
    write_text(run_dir / f"replay-step{step}.json", json.dumps(report, indent=1))
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a run directory (config.json, checkpoints, nonfinite.json)")
    ap.add_argument("--step", type=int, help="the step to replay to (default: the one in nonfinite.json)")
    ap.add_argument("--devices", help="replay the run's arithmetic on these devices instead of its own "
                                      "(e.g. cpu, or cuda:0,cuda:0)")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        ap.error(f"{run_dir}: no config.json; give a run directory made by python -m alexnet.train or "
                 "run_all")
    step = args.step
    if step is None:
        if not (run_dir / NONFINITE).exists():
            ap.error(f"{run_dir}: no {NONFINITE} (the run never had a non-finite loss); give --step N")
        step = json.loads((run_dir / NONFINITE).read_text())["step"]
    if step < 1:
        ap.error(f"--step {step}: must be at least 1")
    try:
        replay(run_dir, step, args.devices)
    except ValueError as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
