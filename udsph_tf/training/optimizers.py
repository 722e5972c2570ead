"""The networks' optimizers: Keras Adam, or (--fused_adam) the same Adam applied by one op.

Keras 3's Adam updates each variable with about ten separate element-wise ops (m, v, the
variable, each read and written on its own). `FusedAdam` keeps everything of Keras's Adam (its
slot variables and their checkpoint names, `iterations`, the `learning_rate` variable,
LossScaleOptimizer wrapping, tf.distribute's per-device update) and replaces only the update
of a dense gradient by TensorFlow's `ResourceApplyAdam` kernel, which does the same arithmetic
in one pass over the variable.

The rule is the same, epsilon included. Keras (update_step below Keras 3.15's `Adam`):

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)          t = iterations + 1
    m += (g - m) (1 - beta_1);  v += (g^2 - v) (1 - beta_2)
    w -= alpha m / (sqrt(v) + epsilon)

ResourceApplyAdam computes lr_t = lr sqrt(1 - beta2_power) / (1 - beta1_power) from the powers
it is given, the same m and v, and w -= lr_t m / (sqrt(v) + epsilon): epsilon is added to
sqrt(v) of the *uncorrected* second moment in both ("epsilon hat" of Kingma & Ba, just before
their Section 2.1), not to sqrt(v_hat) as in the paper's Algorithm 1. So both give the same
values up to float rounding (the kernel evaluates alpha in its own order and vectorises).
"""

import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras or tf variable. Inside tf.distribute's per-device update
    (TFOptimizer._distributed_tf_update_step) a MirroredVariable's handle is the component
    on the device being updated."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose dense update is one ResourceApplyAdam per variable.

    Sparse (IndexedSlices) gradients and amsgrad go through Keras's own update_step.
    """

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, local_step), beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
            use_locking=False)


def make_optimizer(net, learning_rate, fused=False, loss_scale=False, weight_decay=0.0):
    """The Adam of network `net` (call under the strategy's scope). fused: FusedAdam (same
    rule, same slots); loss_scale: wrapped in Keras's LossScaleOptimizer (mixed_float16);
    weight_decay: Keras's decoupled decay (AdamW: w -= lr * weight_decay * w before each
    update, in the base class's apply, so the fused update keeps it)."""
    cls = FusedAdam if fused else keras.optimizers.Adam
    opt = cls(learning_rate=learning_rate, name=f"adam_{net}", weight_decay=weight_decay or None)
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt, name=f"scaled_{net}")
    return opt
