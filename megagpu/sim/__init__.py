"""Pure simulation: hardware model, cluster, discrete-event simulator, evaluation."""
