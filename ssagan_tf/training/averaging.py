"""An exponential moving average of the translation networks' weights (`--ema_decay`).

GAN weights wander from step to step: at batch 1 the validation tumor rate of normal->tumor swings
by 0.15-0.4 between epochs. An average over the last ~1 / (1 - decay) steps of the generators and
attention networks (Polyak averaging, as Keras' optimizers do with `use_ema`; Yazici et al. 2019
for GANs) is a steadier model to validate, export and augment with. The raw weights still train
(the average never feeds back into a step), and both are in the checkpoint, so a resumed run
continues the raw weights and the average exactly.

After step k the shadow of each weight w is ``s_k = decay * s_{k-1} + (1 - decay) * w_k``, with
``s_0`` the weight at the start (so no bias correction is needed).

Only the generators are averaged. The attention networks train during the warm-up alone and are
then frozen, so their raw weights are already steady where it matters; an average of them lags
the training by ~1 / (1 - decay) steps, which misleads the warm-up criterion (it judges the
attention) and exports an attention the run never froze. Measured on Brain-Tumor-Progression (71
steps per epoch, decay 0.995): after epoch 2 the raw A_t reached a validation Dice of 0.156 over
4% of the slice while the average, still half its initial weights, scored 0.012 over 77%; the
plateau criterion ended the warm-up on that flat average and selection kept it.
"""

from __future__ import annotations

import tensorflow as tf

# The networks averaged: the two generators (not the attention networks, see above; the
# discriminators are not used after training). The other translation networks are shown raw.
AVERAGED = ("normal_to_tumor", "tumor_to_normal")
SHOWN_RAW = ("attention_normal", "attention_tumor")
CHECKPOINT_KEY = "weight_average"      # the average's name in a training checkpoint


def averaged_networks(models) -> dict:
    """name -> network for the averaged networks `models` has."""
    return {name: network for name, network in models.named().items() if name in AVERAGED}


class WeightAverage:
    """Shadow variables of the averaged networks' float weights; build inside the strategy's scope
    (the shadows are then mirrored like the weights), update in cross-replica context."""

    def __init__(self, models, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self._pairs = {}
        for name, network in averaged_networks(models).items():
            weights = [w for w in network.weights if tf.as_dtype(w.dtype).is_floating]
            self._pairs[name] = [(w, tf.Variable(tf.identity(w.value), trainable=False,
                                                 name=f"average_{name}_{i}"))
                                 for i, w in enumerate(weights)]

    def trackable(self) -> tf.train.Checkpoint:
        """The shadows as one checkpoint object, by network and weight position (the same layout
        `restore_models` reads)."""
        return tf.train.Checkpoint(**{name: [shadow for _, shadow in pairs] for name, pairs in self._pairs.items()})

    def update(self):
        """One averaging step, after the optimizers have applied the step's gradients."""
        decay = tf.constant(self.decay, tf.float32)
        for pairs in self._pairs.values():
            for weight, shadow in pairs:
                shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(weight.value, shadow.dtype))

    def reset(self):
        """Start the average from the current weights (a run that had none before)."""
        for pairs in self._pairs.values():
            for weight, shadow in pairs:
                shadow.assign(weight.value)

    def copy_to(self, models):
        """Write the shadows into the averaged networks of `models` (same architecture)."""
        for name, network in averaged_networks(models).items():
            weights = [w for w in network.weights if tf.as_dtype(w.dtype).is_floating]
            for weight, (_, shadow) in zip(weights, self._pairs[name], strict=True):
                weight.assign(tf.convert_to_tensor(shadow))


def has_average(checkpoint_path: str) -> bool:
    """Whether the checkpoint at `checkpoint_path` holds a weight average."""
    return any(name.startswith(CHECKPOINT_KEY + "/") for name, _ in tf.train.list_variables(checkpoint_path))


def load_average_into(models, checkpoint_path: str):
    """Replace the averaged networks' weights of `models` by the checkpoint's average."""
    average = WeightAverage(models, 0.5)            # the decay plays no part in reading
    tf.train.Checkpoint(**{CHECKPOINT_KEY: average.trackable()}).restore(checkpoint_path).expect_partial() \
        .assert_existing_objects_matched()
    average.copy_to(models)


def copy_raw(models, shown_models):
    """Copy the weights of the translation networks that are not averaged (the attention
    networks) from the trained `models` into `shown_models`."""
    trained, shown = models.named(), shown_models.named()
    for name in SHOWN_RAW:
        if name in trained:
            for target, weight in zip(shown[name].weights, trained[name].weights, strict=True):
                target.assign(weight.value)


class ShowAverage:
    """The periodic action that copies the average of the generators, and the raw attention
    networks, into the networks validation and the sample images use, before either runs (it goes
    ahead of them in the loop's action list)."""

    def __init__(self, average: WeightAverage, models, shown_models, actions: list):
        self.average, self.models, self.shown_models = average, models, shown_models
        self.actions = list(actions)
        self._show()

    def _show(self):
        self.average.copy_to(self.shown_models)
        copy_raw(self.models, self.shown_models)

    def due(self, step: int) -> bool:
        return any(action.due(step) for action in self.actions)

    def __call__(self, step: int, values=None):
        self._show()
