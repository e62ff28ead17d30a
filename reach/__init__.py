"""reach: LP relaxations, the operator-splitting solver, and multi-step reachability of ReLU
networks and closed loops. ``reach`` imports ``dynid``; ``dynid`` never imports ``reach``."""
