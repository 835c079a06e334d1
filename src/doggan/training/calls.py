"""Several training steps in one compiled call (train.steps_per_call), their values read once per call.

On a GPU a small network's step takes a few milliseconds, and each return to Python (the losses turned
into floats, the progress bar, the budget) is a real share of it. The call loops over the distributed
iterator inside one `tf.function`, taking each step's kind (G updated every n_critic steps, replayed
fakes every replay_every steps) from the step variable, and sums the step values for the epoch's record.
It stops after the first step whose values are not finite, so the loop can name that step. The number of
steps is a tensor: one trace serves every call length.
"""

from __future__ import annotations

import tensorflow as tf

from doggan.params import TrainParams
from doggan.training.state import GAN
from doggan.training.step import STEP_VALUES, make_step_body


def step_kinds(gan: GAN, params: TrainParams) -> list[tuple[bool, bool]]:
    """The (update_g, replay) kinds of step the run can take, each compiled once into the call."""
    g_kinds = (True,) if params.n_critic == 1 else (False, True)
    replay_kinds = (False, True) if gan.replay is not None else (False,)
    return [(g, r) for g in g_kinds for r in replay_kinds]


def kind_of(gan: GAN, params: TrainParams) -> tf.Tensor:
    """The index in `step_kinds` of the step after gan.step: G updated when it ends n_critic steps,
    replayed fakes when it ends replay_every steps after the first step."""
    step = gan.step
    index = tf.constant(0)
    if params.n_critic > 1:
        index += tf.cast((step + 1) % params.n_critic == 0, tf.int32) * (2 if gan.replay is not None else 1)
    if gan.replay is not None:
        index += tf.cast(tf.logical_and(step > 0, (step + 1) % params.replay_every == 0), tf.int32)
    return index


def make_train_call(strategy: tf.distribute.Strategy, gan: GAN, params: TrainParams, diff: str = ""):
    """The compiled call `(iterator, n) -> (steps, totals, last)`: up to `n` steps from the distributed
    `iterator`, stopping after a step with a non-finite value. `steps` counts the finite steps, `totals`
    sums their STEP_VALUES by name, `last` holds the values of the last step taken (the non-finite one
    when `steps` < `n`)."""
    kinds = step_kinds(gan, params)
    bodies = [make_step_body(strategy, gan, params, g, r, diff) for g, r in kinds]

    def one_step(inputs):
        if len(bodies) == 1:
            return bodies[0](inputs)
        branches = [lambda body=body: body(inputs) for body in bodies]
        return tf.switch_case(kind_of(gan, params), branches)

    @tf.function
    def train_call(iterator, n):
        zeros = {k: tf.constant(0.0) for k in STEP_VALUES}

        def more(done, finite, totals, last):
            return tf.logical_and(finite, done < n)

        def step(done, finite, totals, last):
            values = one_step(next(iterator))
            finite = tf.reduce_all(tf.math.is_finite(tf.stack([values[k] for k in STEP_VALUES])))
            totals = {k: totals[k] + values[k] for k in STEP_VALUES}
            return done + tf.cast(finite, tf.int32), finite, totals, values

        start = (tf.constant(0), tf.constant(True), zeros, zeros)
        done, _, totals, last = tf.while_loop(more, step, start)
        return done, totals, last

    return train_call
