# Stage: model (see docs/architecture.md)
