"""megagpu kube layer (see DESIGN section 2)."""
