"""The inner train step: one simultaneous update of the generators (+ attention) and the
discriminators on one global batch, run on every replica with `strategy.run`.

The step is composed as pytorch-CycleGAN composes its own: one forward pass of both cycles
(`TrainStep.translations`), the generator objective (`generator_objective`, docs/method.md,
"Losses": adversarial + lambda_cyc * cycle + lambda_idt * lambda_cyc * identity + lambda_mask *
semi-supervised attention loss, + the attention-area hinge while the attention trains and the
lesion levers when asked for, painting inside transplanted lesion masks among them) and one
discriminator objective (`discriminator_objective`) called for D_t and for D_n, which see
attention-guided inputs once the attention warm-up is over (and, with `--d_transpose`, each slice
transposed at random), and, with `--d_local`, for the local discriminators on crops
(`local_views`). Terms are named, not numbered (the paper numbers its losses as one group).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from ssagan_tf import lesions, losses
from ssagan_tf.models import compose_attention, reconstruct, translate_parts
from ssagan_tf.training.pool import replica_pool
from ssagan_tf.training.schedule import Phase


class Translations(NamedTuple):
    """One forward pass of both cycles: each fake with the attention map of its source slice
    (all ones without attention networks), and each reconstruction."""
    fake_t: tf.Tensor      # x_n translated to the tumor domain
    att_n: tf.Tensor       # A_n(x_n)
    rec_n: tf.Tensor       # fake_t translated back
    fake_n: tf.Tensor      # x_t translated to the normal domain
    att_t: tf.Tensor       # A_t(x_t)
    rec_t: tf.Tensor       # fake_n translated back
    painted_t: tf.Tensor | None = None   # --lambda_paint: G_n2t(x_n) inside each transplanted lesion mask
    generated_t: tf.Tensor | None = None  # --nolocal_trains_attention: G_n2t(x_n) before the composition
    generated_n: tf.Tensor | None = None  # the same of G_t2n(x_t)


def transpose_at_random(images, probability: float, seed):
    """Each slice of `images` [B, S, S, C] transposed (rows and columns swapped) with
    `probability`, drawn per slice from the stateless `seed` [2] (`--d_transpose`)."""
    drawn = tf.random.stateless_uniform(tf.shape(images)[:1], seed=seed) < probability
    return tf.where(drawn[:, None, None, None], tf.transpose(images, [0, 2, 1, 3]), images)


def attention_centres(maps):
    """[B, H, W, 1] maps -> [B, 2]: the (row, column) of each map's weighted centroid, in pixels
    (`lesions.centroids`, which gives (x, y)); the slice's centre where a map is all 0."""
    return tf.reverse(lesions.centroids(tf.cast(maps, tf.float32)), axis=[1])


def crop_at(images, centres, size: int):
    """[B, H, W, C] -> [B, size, size, C]: each slice's size x size window centred as near its
    `centres` row (row, column in pixels, [B, 2]) as lies wholly inside the slice. Whole pixels,
    no interpolation; gradients flow to `images`."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    half = (size - 1) / 2.0
    top = tf.clip_by_value(tf.cast(tf.round(centres[:, 0] - half), tf.int32), 0, height - size)
    left = tf.clip_by_value(tf.cast(tf.round(centres[:, 1] - half), tf.int32), 0, width - size)
    window = tf.range(size)[None, :]
    rows = tf.gather(images, top[:, None] + window, axis=1, batch_dims=1)
    return tf.gather(rows, left[:, None] + window, axis=2, batch_dims=1)


def local_views(x_n, x_t, cycle, tumor_mask, has_mask, size: int, trains_attention: bool = True) -> dict:
    """The crops the local discriminators see (`--d_local`): where each tumor slice's lesion is
    (its mask when it has one, else A_t), the real tumor and what tumor->normal made of it; where
    A_n draws on each normal slice, the real normal tissue and what normal->tumor drew. The
    centres take no gradient. Without `trains_attention` the translations in the crops are
    composed again with attention that takes no gradient either (the same values), so that the
    local terms train how the generators paint and not where the attention points; `cycle` then
    holds the generators' raw outputs."""
    has = tf.cast(has_mask, tf.float32)[:, None, None, None] > 0
    lesion = tf.where(has, tf.cast(tumor_mask, tf.float32), tf.cast(cycle.att_t, tf.float32))
    at_lesion = attention_centres(tf.stop_gradient(lesion))
    at_drawn = attention_centres(tf.stop_gradient(cycle.att_n))
    fake_t, fake_n = cycle.fake_t, cycle.fake_n
    if not trains_attention:
        fake_t = compose_attention(tf.cast(x_n, tf.float32), cycle.generated_t, tf.stop_gradient(cycle.att_n))
        fake_n = compose_attention(tf.cast(x_t, tf.float32), cycle.generated_n, tf.stop_gradient(cycle.att_t))
    return {"real_tumor": crop_at(x_t, at_lesion, size), "fake_normal": crop_at(fake_n, at_lesion, size),
            "real_normal": crop_at(x_n, at_drawn, size), "fake_tumor": crop_at(fake_t, at_drawn, size)}


# Where the slices a discriminator sees come from: each takes its own draws of --d_transpose.
D_VIEWS = {"generator_fake_tumor": 1, "generator_fake_normal": 2, "real_tumor": 3, "pooled_tumor": 4,
           "real_normal": 5, "pooled_normal": 6, "generator_painted": 7, "painted": 8}


class TrainStep:
    """Callable `(distributed_batch, phase) -> {loss name: global mean}` over a `TrainingState`.

    `phase` (a `schedule.Phase`) says whether the attention networks train and whether the
    discriminators see attention-guided views; each phase is one traced graph.
    """

    def __init__(self, strategy, state, config):
        self.strategy, self.state, self.config = strategy, state, config
        self.models = state.models
        # XLA compiles the per-replica maths only: the gradient all-reduce and the optimizer
        # update (merge_call) cannot live inside an XLA cluster.
        self._compute = tf.function(self._losses_and_gradients, jit_compile=True) if config.jit_compile \
            else self._losses_and_gradients
        self._functions = {}

    def __call__(self, batch, phase: Phase):
        if phase not in self._functions:
            self._functions[phase] = tf.function(lambda b: self._distributed_step(b, phase))
        return self._functions[phase](batch)

    def _distributed_step(self, batch, phase):
        per_replica = self.strategy.run(self._replica_step, args=(batch, phase))
        self.state.step.assign_add(1)
        if self.state.average is not None:
            # After the optimizers (automatic control dependencies order it after their updates).
            self.state.average.update()
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def trainable_generator_variables(self, phase: Phase) -> list:
        return self.models.generator_variables + (self.models.attention_variables if phase.train_attention else [])

    def _replica_step(self, batch, phase):
        labelled = tf.constant(0.0)
        if self.models.config.mask_loss:
            # The attention loss averages over the labelled examples of the *global* batch.
            labelled = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.cast(batch["tumor"]["has_mask"], tf.float32)))
        if self.config.transplants_lesions:
            batch = self._with_lesions(batch)
        if self.config.d_transpose > 0:
            replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
            batch = {**batch, "d_seed": tf.stack([tf.constant(self.config.seed, tf.int64) * 1024 + replica,
                                                  tf.cast(self.state.step, tf.int64)])}
        gen_grads, disc_grads, values = self._compute(batch, labelled, phase)
        self.state.generator_optimizer.apply_gradients(zip(gen_grads, self.trainable_generator_variables(phase)))
        self.state.discriminator_optimizer.apply_gradients(zip(disc_grads, self.models.discriminator_variables))
        return values

    def _with_lesions(self, batch):
        """The batch plus each normal slice with the lesion of the labelled tumor slice beside it
        transplanted (`lesions.transplant`), seeded by the run's seed, the step and the replica,
        so a resumed run draws the same ones."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        seed = tf.stack([tf.constant(self.config.seed, tf.int64) * 1024 + replica, tf.cast(self.state.step, tf.int64)])
        tumor = batch["tumor"]
        lesioned, masks, placed = lesions.transplant(batch["normal"]["image"], tumor["image"], tumor["mask"],
                                                     tumor["has_mask"], seed)
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(placed))
        return {**batch, "lesion": {"image": lesioned, "mask": masks, "placed": placed, "count": count}}

    def _d_input(self, batch, images, view: str):
        """What a discriminator sees of `images`: with `--d_transpose`, each slice transposed at
        random (`transpose_at_random`), drawn from the step's seed and the view (`D_VIEWS`)."""
        if self.config.d_transpose <= 0:
            return images
        seed = batch["d_seed"] + tf.constant([D_VIEWS[view] << 40, 0], tf.int64)
        return transpose_at_random(images, self.config.d_transpose, seed)

    def _scaled(self, optimizer, loss):
        return optimizer.scale_loss(loss) if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else loss

    def _global_mean(self, per_example):
        """A per-example loss [B] as this replica's share of its mean over the global batch (the
        shares of all replicas add up to that mean)."""
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)

    def translations(self, x_n, x_t, lesion_masks=None) -> Translations:
        """Both cycles on a batch (pytorch-CycleGAN's `forward`): x_n -> fake_t -> rec_n and
        x_t -> fake_n -> rec_t, the way back as `--cycle_attention` says. With `lesion_masks`
        (`--lambda_paint`), the same G_n2t(x_n) also composed inside them (paper Eq. 1 with the
        mask in A_n's place)."""
        m, c = self.models, self.config
        fake_t, att_n, generated_t = translate_parts(m.normal_to_tumor, m.attention_normal, x_n, training=True)
        painted_t = None
        if lesion_masks is not None:
            painted_t = compose_attention(tf.convert_to_tensor(x_n, tf.float32), generated_t,
                                          tf.cast(lesion_masks, tf.float32))
        rec_n = reconstruct(m.tumor_to_normal, m.attention_tumor, fake_t, att_n, c.cycle_attention, training=True)
        fake_n, att_t, generated_n = translate_parts(m.tumor_to_normal, m.attention_tumor, x_t, training=True)
        rec_t = reconstruct(m.normal_to_tumor, m.attention_normal, fake_n, att_t, c.cycle_attention, training=True)
        # The generators' raw outputs go along where the local crops are composed again without
        # the attention's gradient (`local_views`).
        if c.local_trains_attention or not m.config.local_discriminators:
            generated_t = generated_n = None
        return Translations(fake_t, att_n, rec_n, fake_n, att_t, rec_t, painted_t, generated_t, generated_n)

    def generator_objective(self, batch, cycle: Translations, labelled, phase: Phase,
                            local_crops: dict | None = None):
        """What the generators (and, while they train, the attention networks) minimise
        (pytorch-CycleGAN's `backward_G` without the backward): `(total, terms)`, each term named
        as the console and TensorBoard report it and, like the total, this replica's share of a
        global mean (over the global batch; the attention-mask, lesion-guidance and fill terms over
        the global batch's labelled slices, `labelled`, and placed lesions). `local_crops`: the
        step's `local_views` when the caller cut them already (`--d_local`)."""
        m, c = self.models, self.config
        x_n, x_t = batch["normal"]["image"], batch["tumor"]["image"]
        mean = self._global_mean
        masked = phase.mask_discriminators
        # D_t judges tumor slices: real x_t (own attention A_t) against fakes from x_n (A_n).
        _, view_fake_t = losses.discriminator_views(c.d_mode, masked, x_t, cycle.fake_t, cycle.att_n, cycle.att_t,
                                                    c.tau)
        _, view_fake_n = losses.discriminator_views(c.d_mode, masked, x_n, cycle.fake_n, cycle.att_t, cycle.att_n,
                                                    c.tau)

        adv_n2t = losses.generator_adversarial_loss(
            m.disc_tumor(self._d_input(batch, view_fake_t, "generator_fake_tumor"), training=True), c.gan_loss)
        adv_t2n = losses.generator_adversarial_loss(
            m.disc_normal(self._d_input(batch, view_fake_n, "generator_fake_normal"), training=True), c.gan_loss)
        cyc_n = c.lambda_cycle * losses.cycle_consistency_loss(x_n, cycle.rec_n)
        cyc_t = c.lambda_cycle * losses.cycle_consistency_loss(x_t, cycle.rec_t)
        per_example = adv_n2t + adv_t2n + cyc_n + cyc_t
        identity = tf.zeros_like(cyc_n)
        if c.lambda_identity > 0:
            identity = c.lambda_identity * c.lambda_cycle * (
                losses.identity_loss(x_t, m.normal_to_tumor(x_t, training=True))
                + losses.identity_loss(x_n, m.tumor_to_normal(x_n, training=True)))
            per_example += identity
        if phase.train_attention and c.attention_area > 0 and m.config.use_attention:
            area = c.lambda_attention_area * losses.attention_area_loss(cycle.att_n, x_n, c.attention_area)
            per_example += area
        else:
            area = tf.zeros_like(cyc_n)
        attention_mask = tf.constant(0.0)
        if m.config.mask_loss:
            attention_mask = c.lambda_mask * losses.semi_supervised_attention_loss(
                cycle.att_t, batch["tumor"]["mask"], batch["tumor"]["has_mask"], labelled, c.mask_loss_type)
        guidance = fill = tf.constant(0.0)
        if c.lesion_guidance > 0 and phase.train_attention and m.config.use_attention:
            lesion = batch["lesion"]
            guidance = c.lesion_guidance * losses.semi_supervised_attention_loss(
                cycle.att_n, lesion["mask"], lesion["placed"], lesion["count"], c.mask_loss_type)
        if c.lambda_fill > 0:
            lesion = batch["lesion"]
            filled = compose_attention(lesion["image"], tf.cast(m.tumor_to_normal(lesion["image"], training=True),
                                                                tf.float32), lesion["mask"])
            fill = c.lambda_fill * losses.healthy_fill_loss(filled, x_n, lesion["mask"], lesion["placed"],
                                                            lesion["count"])
        paint = tf.constant(0.0)
        if cycle.painted_t is not None:
            # D_t's view of each painted slice, the transplanted mask as its source attention.
            lesion = batch["lesion"]
            _, view_painted = losses.discriminator_views(c.d_mode, masked, x_t, cycle.painted_t, lesion["mask"],
                                                         cycle.att_t, c.tau)
            paint = c.lambda_paint * losses.placed_mean(losses.generator_adversarial_loss(
                m.disc_tumor(self._d_input(batch, view_painted, "generator_painted"), training=True), c.gan_loss),
                lesion["placed"], lesion["count"])
        local = tf.zeros_like(cyc_n)
        if m.config.local_discriminators:
            views = self._local_views(batch, cycle) if local_crops is None else local_crops
            local = (losses.generator_adversarial_loss(m.disc_tumor_local(views["fake_tumor"], training=True),
                                                       c.gan_loss)
                     + losses.generator_adversarial_loss(m.disc_normal_local(views["fake_normal"], training=True),
                                                         c.gan_loss))
            per_example += local
        total = mean(per_example) + attention_mask + guidance + fill + paint
        terms = {"adversarial_normal_to_tumor": mean(adv_n2t), "adversarial_tumor_to_normal": mean(adv_t2n),
                 "cycle_normal": mean(cyc_n), "cycle_tumor": mean(cyc_t), "identity": mean(identity),
                 "attention_mask": attention_mask, "attention_area": mean(area)}
        if c.lesion_guidance > 0:
            terms["lesion_guidance"] = guidance
        if c.lambda_fill > 0:
            terms["healthy_fill"] = fill
        if cycle.painted_t is not None:
            terms["lesion_painting"] = paint
        if m.config.local_discriminators:
            terms["local_adversarial"] = mean(local)
        return total, terms

    def _local_views(self, batch, cycle) -> dict:
        tumor = batch["tumor"]
        return local_views(batch["normal"]["image"], tumor["image"], cycle, tumor["mask"], tumor["has_mask"],
                           self.models.config.d_local, self.config.local_trains_attention)

    def discriminator_objective(self, disc, real, fake):
        """What one discriminator minimises on its (real, fake) views (pytorch-CycleGAN's
        `backward_D_basic`; the same function for D_t and D_n): per example, [B]."""
        return losses.discriminator_adversarial_loss(disc(real, training=True), disc(fake, training=True),
                                                     self.config.gan_loss)

    def _losses_and_gradients(self, batch, labelled, phase):
        """Under one tape: the translations, the generator objective and the discriminator
        objective of D_t and of D_n; then each player's gradients (of its loss-scaled total under
        fp16) and the step's values, every one a global-batch mean."""
        m, c = self.models, self.config
        x_n, x_t = batch["normal"]["image"], batch["tumor"]["image"]
        mean = self._global_mean
        masked = phase.mask_discriminators
        painting = c.lambda_paint > 0 and m.attention_normal is not None
        with tf.GradientTape(persistent=True) as tape:
            cycle = self.translations(x_n, x_t, batch["lesion"]["mask"] if painting else None)
            # The local discriminators' crops, cut once for both players' terms.
            views = self._local_views(batch, cycle) if m.config.local_discriminators else None
            gen_total, gen_terms = self.generator_objective(batch, cycle, labelled, phase, views)

            # The pools hold unmasked fakes with their source attention; the phase's masking is
            # applied to what they return.
            pooled_t, pooled_att_n = replica_pool(self.state.pools_tumor).query(tf.stop_gradient(cycle.fake_t),
                                                                                tf.stop_gradient(cycle.att_n))
            pooled_n, pooled_att_t = replica_pool(self.state.pools_normal).query(tf.stop_gradient(cycle.fake_n),
                                                                                 tf.stop_gradient(cycle.att_t))
            real_t, pooled_t = losses.discriminator_views(c.d_mode, masked, x_t, pooled_t, pooled_att_n,
                                                          tf.stop_gradient(cycle.att_t), c.tau)
            real_n, pooled_n = losses.discriminator_views(c.d_mode, masked, x_n, pooled_n, pooled_att_t,
                                                          tf.stop_gradient(cycle.att_n), c.tau)
            d_t = self.discriminator_objective(m.disc_tumor, self._d_input(batch, real_t, "real_tumor"),
                                               self._d_input(batch, pooled_t, "pooled_tumor"))
            d_n = self.discriminator_objective(m.disc_normal, self._d_input(batch, real_n, "real_normal"),
                                               self._d_input(batch, pooled_n, "pooled_normal"))
            disc_total = mean(d_t + d_n)
            if painting:
                # D_t also learns that slices painted inside transplanted masks are fakes (not pooled).
                lesion = batch["lesion"]
                _, view_painted = losses.discriminator_views(c.d_mode, masked, x_t, tf.stop_gradient(cycle.painted_t),
                                                             lesion["mask"], tf.stop_gradient(cycle.att_t), c.tau)
                d_paint = losses.placed_mean(losses.discriminator_fake_loss(
                    m.disc_tumor(self._d_input(batch, view_painted, "painted"), training=True), c.gan_loss),
                    lesion["placed"], lesion["count"])
                disc_total += d_paint
            if m.config.local_discriminators:
                # The local discriminators see this step's fakes (not pooled).
                d_t_local = self.discriminator_objective(m.disc_tumor_local, views["real_tumor"],
                                                         tf.stop_gradient(views["fake_tumor"]))
                d_n_local = self.discriminator_objective(m.disc_normal_local, views["real_normal"],
                                                         tf.stop_gradient(views["fake_normal"]))
                disc_total += mean(d_t_local + d_n_local)
            gen_scaled = self._scaled(self.state.generator_optimizer, gen_total)
            disc_scaled = self._scaled(self.state.discriminator_optimizer, disc_total)

        gen_grads = tape.gradient(gen_scaled, self.trainable_generator_variables(phase))
        disc_grads = tape.gradient(disc_scaled, m.discriminator_variables)
        del tape
        # These names drive the console, TensorBoard and results.
        values = {"generator_total": gen_total, "discriminator_total": disc_total, **gen_terms,
                  "disc_tumor": mean(d_t), "disc_normal": mean(d_n)}
        if painting:
            values["disc_tumor_painted"] = d_paint
        if m.config.local_discriminators:
            values.update(disc_tumor_local=mean(d_t_local), disc_normal_local=mean(d_n_local))
        if m.config.use_attention:
            # The mean attention of each direction on the step's inputs (A_n on the normal slices, A_t
            # on the tumor slices): A_n at exactly 0 means normal->tumor is the identity.
            values["attention_normal_mean"] = mean(losses.per_example_mean(cycle.att_n))
            values["attention_tumor_mean"] = mean(losses.per_example_mean(cycle.att_t))
        return gen_grads, disc_grads, values
