"""Models: plain ``nn.Module``s, usable for inference without Lightning."""
