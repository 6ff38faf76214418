"""Container images (images/): docker buildx commands, registries, ECR login."""
