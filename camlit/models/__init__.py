"""The networks: the hand-built ResNets and the forensic front ends before them."""
