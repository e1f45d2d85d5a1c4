# Stage: tokenizer (see docs/architecture.md)
