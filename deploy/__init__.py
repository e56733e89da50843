"""Deployment: the local stack (deploy/local) and the production manifests."""
