"""DiffAugment (Zhao et al., 2020): differentiable colour, translation and cutout of D's inputs.

The ops and their ranges follow the TF reference (DiffAugment_tf.py in mit-han-lab/data-efficient-gans),
applied to real and fake images alike so that D never sees an unaugmented image and G's gradient flows
back through the augmentation. Each image's draws depend only on the seed and its row in the global
batch: every replica draws the few parameters of the whole global batch from the same stateless seed and
keeps its own rows, so a step augments the same images the same way on one replica or on several.

With ADA's adaptive probability (Karras et al., 2020; augment.ada_target) each op is applied to each image
with probability p, drawn per image alike; `ada_adjust` is ADA's rule for moving p.
"""

from __future__ import annotations

import tensorflow as tf

from doggan.params import DIFF_OPS, split_ops

SEED_TAG = 4099  # folded into the step seed, so augmentation draws differ from the step's other draws
GATE_TAG = 2053  # folded into an op's seed for the draws that decide, per image, whether the op applies


def diff_augment(
    images: tf.Tensor,
    policy: tuple[str, ...] | str,
    seed: tf.Tensor,
    offset: int | tf.Tensor = 0,
    total: int | tf.Tensor | None = None,
    probability: tf.Tensor | float | None = None,
) -> tf.Tensor:
    """Augment NHWC images in [-1, 1] (float16 or float32) with the ops of `policy` (a comma list or a
    tuple of color, translation, cutout; always applied in that order).

    `images` are rows `offset`.. of a global batch of `total` rows (default: they are the whole batch);
    each image's draws come from `seed` (shape [2], int32 or int64, of which the low 31 bits count) and
    its global row alone, and are the same with or without XLA. With a `probability` p (ADA's), each op
    is applied to each image with probability p (p = 0 leaves the images as they are); without, always.
    """
    ops = split_ops(policy if isinstance(policy, str) else ",".join(policy))
    if not ops:
        return images
    if images.shape.rank != 4 or images.shape[1] is None or images.shape[2] is None:
        raise ValueError(
            f"DiffAugment needs NHWC images of a known height and width, got shape {images.shape}"
        )
    sides = images.shape[1:3]
    n = tf.shape(images)[0]
    total = n if total is None else total
    seeds = dict(zip(DIFF_OPS, _split(_nonnegative(seed), len(DIFF_OPS)), strict=True))

    def column(column_seed: tf.Tensor, low: int, high: int) -> tf.Tensor:
        """This batch's rows of one integer in [low, high) drawn for each row of the global batch."""
        drawn = tf.random.stateless_uniform([total], column_seed, minval=low, maxval=high, dtype=tf.int32)
        return tf.slice(drawn, tf.reshape(tf.cast(offset, tf.int32), [1]), tf.reshape(n, [1]))

    def rows(op: str, quantity: int, low: int, high: int) -> tf.Tensor:
        return column(_split(seeds[op], 3)[quantity], low, high)

    def fractions(column_seed: tf.Tensor) -> tf.Tensor:
        """Uniform in [0, 1) from integers, whose draws are the same with or without XLA (floats' are not)."""
        return tf.cast(column(column_seed, 0, 2**24), tf.float32) / 2**24

    def gated(op: str, before: tf.Tensor, after: tf.Tensor) -> tf.Tensor:
        """`after` for the images the op applies to (each with `probability`), `before` for the others."""
        if probability is None:
            return after
        gate_seed = _nonnegative(tf.random.experimental.stateless_fold_in(seeds[op], GATE_TAG))
        applies = fractions(gate_seed) < tf.cast(probability, tf.float32)
        return tf.where(applies[:, None, None, None], after, before)

    x = images
    if "color" in ops:
        quantities = [fractions(s) for s in _split(seeds["color"], 3)]
        x = gated("color", x, color(x, quantities[0] - 0.5, quantities[1] * 2.0, quantities[2] + 0.5))
    if "translation" in ops:
        moves = (rows("translation", k, -(s // 8), s // 8 + 1) for k, s in enumerate(sides))
        x = gated("translation", x, translation(x, *moves))
    if "cutout" in ops:
        # as the reference: centres in [0, side], or [0, side) when the square's side is odd
        centres = (rows("cutout", k, 0, s + 1 - (s // 2) % 2) for k, s in enumerate(sides))
        x = gated("cutout", x, cutout(x, *centres))
    return x


def ada_adjust(p: tf.Tensor, sign_mean: tf.Tensor, target: float, images: int, kimg: float) -> tf.Tensor:
    """ADA's update of p after `images` images whose E[sign D(x_real)] was `sign_mean`: up by
    images / (kimg · 1000) when D is surer of the reals than `target` (it overfits), down when less sure,
    kept within [0, 1]."""
    step = tf.sign(tf.cast(sign_mean, tf.float32) - target) * images / (kimg * 1000.0)
    return tf.clip_by_value(tf.cast(p, tf.float32) + step, 0.0, 1.0)


def _nonnegative(seed: tf.Tensor) -> tf.Tensor:
    """The seed as int32 without its sign bit: XLA reads only int32 seeds, and negative ones unlike TF."""
    return tf.bitwise.bitwise_and(tf.cast(seed, tf.int32), 2**31 - 1)


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
    """`num` independent non-negative int32 seeds drawn from `seed`."""
    return tf.unstack(tf.random.stateless_uniform([num, 2], seed, minval=0, maxval=2**31 - 1, dtype=tf.int32))


def color(x: tf.Tensor, brightness: tf.Tensor, saturation: tf.Tensor, contrast: tf.Tensor) -> tf.Tensor:
    """Each image shifted by its brightness, then its colours and contrast scaled by its factors ([n])."""
    brightness, saturation, contrast = (
        tf.cast(v, x.dtype)[:, None, None, None] for v in (brightness, saturation, contrast)
    )
    x = x + brightness
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * saturation + mean
    # the mean of a whole image is accumulated in float32: float16 sums of 10^4 pixels lose digits
    mean = tf.cast(tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2, 3], keepdims=True), x.dtype)
    return (x - mean) * contrast + mean


def translation(x: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """Each image moved by its own (rows, columns) pixels, what moves in being zeros."""
    return _shift(_shift(x, rows, axis=1), columns, axis=2)


def _shift(x: tf.Tensor, by: tf.Tensor, axis: int) -> tf.Tensor:
    """Each image's pixel i along `axis` taken from i + by (zero where that falls outside the image)."""
    size = x.shape[axis]
    source = tf.range(size)[None, :] + by[:, None]
    inside = (source >= 0) & (source < size)
    moved = tf.gather(x, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
    mask = tf.reshape(tf.cast(inside, x.dtype), [-1, size, 1, 1] if axis == 1 else [-1, 1, size, 1])
    return moved * mask


def cutout(x: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """Each image's square of half its side around its (rows, columns) centre zeroed, clipped at borders."""
    hole = _band(rows, x.shape[1])[:, :, None] & _band(columns, x.shape[2])[:, None, :]
    return x * tf.cast(~hole, x.dtype)[..., None]


def _band(centre: tf.Tensor, side: int) -> tf.Tensor:
    """[n, side] booleans: the side // 2 indices starting at centre - side // 4, as the reference's."""
    length = side // 2
    start = centre[:, None] - length // 2
    index = tf.range(side)[None, :]
    return (index >= start) & (index < start + length)


def augment_replica_batch(
    images: tf.Tensor,
    policy: tuple[str, ...] | str,
    step_seed: tf.Tensor,
    parts: int = 2,
    probability: tf.Tensor | None = None,
) -> tf.Tensor:
    """DiffAugment one replica's D input inside `strategy.run` (or without a strategy).

    `images` is `parts` equal blocks of this replica's rows (real, fake[, replayed]); block p is augmented
    as this replica's rows of the global block p, so the step is the same on any number of replicas.
    `probability` is ADA's p (each op applied to each image with it), None to apply every op always.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    seed = _nonnegative(tf.random.experimental.stateless_fold_in(_nonnegative(step_seed), SEED_TAG))
    blocks = tf.split(images, parts)
    n = tf.shape(blocks[0])[0]
    offset = tf.cast(context.replica_id_in_sync_group, tf.int32) * n
    seeds = _split(seed, parts)
    out = [
        diff_augment(b, policy, s, offset, replicas * n, probability)
        for b, s in zip(blocks, seeds, strict=True)
    ]
    return tf.concat(out, 0)
