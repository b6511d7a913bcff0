"""Training (Petastorm loader, DynInt, DDP): the training issue builds this package."""
