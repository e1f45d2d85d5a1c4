"""Evaluation: validation loss/perplexity, HumanEval generation, sandboxed execution, pass@k."""
