"""SSAH's alternating per-epoch schedule: which network trains, how often, at what rate."""

import dataclasses

from udsph_tf.errors import ConfigError

NETWORKS = ("labnet", "disc", "imgnet", "txtnet")


@dataclasses.dataclass(frozen=True)
class Phase:
    network: str      # one of NETWORKS


def active_networks(config):
    """Networks trained under this config (DCMH-like: no label net, no discriminators)."""
    nets = []
    if config.label_net:
        nets.append("labnet")
    if config.adversarial:
        if not config.label_net:
            # The discriminators' "real" side is LabNet's features; without it there is none.
            raise ConfigError("--adversarial needs --label_net (the discriminators compare "
                              "modality features with LabNet's); use --noadversarial")
        nets.append("disc")
    return nets + ["imgnet", "txtnet"]


def epoch_phases(config):
    """The ordered passes of one epoch: LabNet, discriminators, ImgNet, TxtNet (SSAH)."""
    passes = {"labnet": config.lab_passes, "disc": config.disc_passes,
              "imgnet": config.img_passes, "txtnet": config.txt_passes}
    for name, n in passes.items():
        if n < 0:
            flag = {"labnet": "lab", "disc": "disc", "imgnet": "img", "txtnet": "txt"}[name]
            raise ConfigError(f"--{flag}_passes: {name} passes must be >= 0, got {n}")
    return [Phase(net) for net in active_networks(config) for _ in range(passes[net])]


def base_learning_rates(config):
    return {"labnet": config.lr_lab, "disc": config.lr_disc,
            "imgnet": config.lr_img, "txtnet": config.lr_txt}


def learning_rate(config, network, epoch):
    """Per-network rate for a 0-based epoch: base * lr_decay ** epoch."""
    return base_learning_rates(config)[network] * (config.lr_decay ** epoch)


def data_seed(seed, epoch, phase_number):
    """Shuffle seed of one pass, derived only from the run seed and the position in the
    schedule, so a resumed epoch replays exactly the batches of an uninterrupted run."""
    return (seed * 1_000_003 + epoch * 1_009 + phase_number) % (2 ** 31 - 1)


def patience_spent(config, epochs_done, best_epoch):
    """True once --patience evaluations in a row after the best epoch have not beaten it.

    Read from the checkpointed epoch counters alone, so a resumed run stops where an
    uninterrupted one did; never true without a selected epoch (no validation split)."""
    if config.patience <= 0 or best_epoch < 1:
        return False
    return epochs_done - best_epoch >= config.patience * max(config.eval_every, 1)


def stopped_early(config, history, best_epoch):
    """The epoch a finished run stopped at before --epochs because of --patience, else None."""
    done = max((h["epoch"] for h in history or []), default=0)
    if done < config.epochs and patience_spent(config, done, best_epoch):
        return done
    return None
