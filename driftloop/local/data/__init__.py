"""Data sets: the seeded synthetic image set and the seven drift stages."""
