"""InstrAction (InstrAct, the paper's own model): a ViCLIP backbone with an Action Perceiver,
verb-guided distillation, hard-negative NCE, probability-smoothed DTW alignment and masked action
modelling; trainable with ``instract-eval train instraction`` and evaluated like any baseline.
"""
