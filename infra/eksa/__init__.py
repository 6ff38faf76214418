"""EKS Anywhere on vSphere: vCenter discovery, preflight checks and cluster spec rendering."""
