"""Infrastructure as code of the toolkit's targets."""
