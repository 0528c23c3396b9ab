"""Parameter and object stores: one interface each, local and AWS implementations."""
