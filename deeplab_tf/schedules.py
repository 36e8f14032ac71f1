"""The "poly" learning rate of Sec. 4.1, with an optional linear warmup."""
import keras


@keras.saving.register_keras_serializable(package="deeplab_tf")
class PolyWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr = base_lr * (1 - step / steps) ** power, after `warmup_steps` of linear warmup.

    Args:
      base_lr: 0.007 in the paper (0.001 for stage 2, 0.0001 after COCO, Sec. 4.1, 4.3).
      steps: total training steps; lr reaches 0 there.
      power: 0.9.
      warmup_steps: lr rises linearly from 0 to the poly value over these steps.
    """

    def __init__(self, base_lr, steps, power=0.9, warmup_steps=0):
        self.base_lr = float(base_lr)
        self.steps = int(steps)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self._poly = keras.optimizers.schedules.PolynomialDecay(
            self.base_lr, self.steps, end_learning_rate=0.0, power=self.power)

    def __call__(self, step):
        lr = self._poly(step)
        if self.warmup_steps:
            step = keras.ops.cast(step, "float32")
            lr = lr * keras.ops.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr

    def get_config(self):
        return dict(base_lr=self.base_lr, steps=self.steps, power=self.power,
                    warmup_steps=self.warmup_steps)
