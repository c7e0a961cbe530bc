"""Job logs: the checked relay from what agents ship to what viewers read, its gate and its order rules."""
