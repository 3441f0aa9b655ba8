"""Training: the embedded synth encoders (`instract_eval.training.synth`)."""
