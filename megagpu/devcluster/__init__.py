"""Local real control plane: binaries, kwokctl, fake GPU nodes, simulated runtime."""
