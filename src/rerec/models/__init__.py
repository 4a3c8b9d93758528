"""Models: the embedded SmolLM2, the tiny from-scratch model, any Hugging Face folder; LoRA through peft;
the model profiles (a model with the budgets that make it affordable where it runs)."""
