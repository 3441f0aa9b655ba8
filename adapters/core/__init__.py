"""What adapter families share: checkpoint loading, weight download, tokenizers, networks, base class."""
