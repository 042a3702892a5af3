"""Model families behind one interface (``VideoModel``) and a registry that loads them by name."""
