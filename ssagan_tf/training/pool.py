"""The image history pool of Shrivastava et al. (used by CycleGAN; docs/method.md, "Losses"), kept in
the graph so that it lives inside the compiled train step and inside checkpoints.

Discriminators see, for each new translated image, with probability 1/2 a translation from an
earlier step (which the new one replaces in the pool), else the new one; until the pool is full
every image is stored and returned as is. Each translation is stored unmasked, with the attention
map of its source (as Mejjati et al.'s pool does), and the step masks what the pool returns for the
phase it is in: a translation pooled during the attention warm-up is shown masked after it, so the
discriminator never compares an unmasked fake with masked reals. Randomness is stateless, keyed
by (seed, number of queries so far): the pool's own counter is its random state, so a restored
pool continues with exactly the draws it would have made.
"""

from __future__ import annotations

import tensorflow as tf

from ssagan_tf.training.strategy import first_replica_index, local_devices


class ImagePool(tf.Module):
    """A pool of `size` (image, attention) pairs, images of shape `image_shape`, for one replica."""

    def __init__(self, size: int, image_shape, seed: int, name: str = "image_pool"):
        super().__init__(name=name)
        self.size = int(size)
        self.seed = int(seed)
        self.images = tf.Variable(tf.zeros([max(self.size, 1), *image_shape], tf.float32),
                                  trainable=False, name="images")
        self.attention = tf.Variable(tf.zeros([max(self.size, 1), *image_shape[:-1], 1], tf.float32),
                                     trainable=False, name="attention")
        self.stored = tf.Variable(0, dtype=tf.int64, trainable=False, name="stored")
        self.queries = tf.Variable(0, dtype=tf.int64, trainable=False, name="queries")

    def query(self, images, attention):
        """Return a batch of (image, attention) pairs the size of `images`, mixing in pooled
        pairs, and update the pool. `attention` [B, H, W, 1] is each image's source attention."""
        images = tf.cast(images, tf.float32)
        attention = tf.cast(attention, tf.float32)
        if self.size == 0:
            return images, attention
        pairs = []
        # The per-replica batch is static and small, so a Python loop unrolls cleanly (and keeps
        # the element-by-element semantics of the reference implementation).
        for i in range(images.shape[0]):
            pairs.append(self._query_one(images[i], attention[i]))
        return tf.stack([p[0] for p in pairs]), tf.stack([p[1] for p in pairs])

    def _query_one(self, image, attention):
        draw = tf.random.stateless_uniform([2], seed=tf.stack([tf.constant(self.seed, tf.int64), self.queries]))
        self.queries.assign_add(1)
        full = self.stored >= self.size

        def store():
            self.images.scatter_nd_update([[self.stored]], image[None])
            self.attention.scatter_nd_update([[self.stored]], attention[None])
            self.stored.assign_add(1)
            return image, attention

        def swap():
            index = tf.minimum(tf.cast(draw[1] * self.size, tf.int64), self.size - 1)
            # gather, not slicing: XLA treats a slice's bounds as compile-time constants and would
            # recompile the step for every new index.
            old = tf.gather(self.images, index), tf.gather(self.attention, index)
            self.images.scatter_nd_update([[index]], image[None])
            self.attention.scatter_nd_update([[index]], attention[None])
            return old

        return tf.cond(tf.logical_not(full), store,
                       lambda: tf.cond(draw[0] < 0.5, swap, lambda: (image, attention)))


def make_pools(strategy, size: int, image_shape, seed: int, name: str) -> list:
    """One pool per local replica, each placed on its replica's device. They are plain (not
    mirrored) variables: replicas see different translations, so their pools differ."""
    pools, first = [], first_replica_index(strategy)
    for i, device in enumerate(local_devices(strategy)):
        with tf.device(device):
            pools.append(ImagePool(size, image_shape, seed=seed * 1009 + first + i, name=f"{name}_{i}"))
    return pools


def replica_pool(pools: list):
    """The pool of the replica whose step is being traced."""
    context = tf.distribute.get_replica_context()
    replica_id = tf.get_static_value(context.replica_id_in_sync_group)
    if replica_id is None:
        raise RuntimeError("replica id is not static; image pools need a strategy that traces per replica")
    # Under multi_worker the id is global; this process holds the pools of its own replicas only.
    return pools[int(replica_id) % len(pools)]
