"""Models: the embedded SmolLM2, the tiny profile, any Hugging Face folder; LoRA through peft."""
