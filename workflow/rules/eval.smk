# Stage: eval (see docs/architecture.md)
