"""Reference answer: the project's own LoRA layer (fundamentals/adapters.py, tested there against peft)."""

from fundamentals.adapters import LoRALinear

__all__ = ["LoRALinear"]
