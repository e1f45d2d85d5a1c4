# Stage: train (see docs/architecture.md)
