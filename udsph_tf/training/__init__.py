"""Training: task.py builds a run (networks, optimizers, buffers, replica steps), trainer.py
loops over its epochs; checkpoints, summaries, strategy and schedule beside them.
udsph_tf/modes/train.py puts them together."""
