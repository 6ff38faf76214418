"""govmomi's vCenter simulator for the EKS Anywhere tests: the Go main and its Python harness."""
