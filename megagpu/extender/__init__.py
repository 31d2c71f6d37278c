"""megagpu extender layer (see DESIGN section 2)."""
