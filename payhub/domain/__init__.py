"""Pure payment domain: money, states, payments. No I/O, no web, no database."""
