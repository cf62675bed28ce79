"""Use cases: what portals, banks and finance staff can make the hub do."""
