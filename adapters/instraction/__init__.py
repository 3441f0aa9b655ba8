"""InstrAction (InstrAct, the paper's own model): a ViCLIP backbone with an Action Perceiver,
verb-guided distillation, hard-negative NCE, probability-smoothed DTW alignment and masked action
modelling; trainable with ``instract-eval train instraction`` and evaluated like any baseline.

Modules: `config` (every hyperparameter, official defaults), `perceiver` (the Action Perceiver and its
local windows), `mam` (the masked-action decoder), `losses` (VTC with distillation, hard-negative
NCE, DTW-Align), `network` (the whole model, the mixed embedding, the loss terms), `checkpoint`
(official ``epochNNNN.pth``, our files, a ViCLIP backbone), `adapter` (the registered ``instraction``
model), `recipe` (the training recipe) and `data` (training batches from annotations).
"""
