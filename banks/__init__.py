"""Bank protocols for PayHub: one package per protocol, each a connector and its simulator."""
