"""A Lightning callback that stops a run as Ctrl-C would, at a given step (the resume tests)."""

import lightning as L


class StopAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt
