"""C sources of pouw's optional native kernel (fused.c), built by setup.py into `_fused`;
pouw.native loads it. Nothing here is imported directly."""
