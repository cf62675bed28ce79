"""The HTTP edge of the hub: portal, finance, bank ingress and operations routes."""
