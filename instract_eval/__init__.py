"""instract-eval: evaluation of video-language models on action understanding."""

__version__ = "0.1.0"
