# Stage: clean (see docs/architecture.md)
