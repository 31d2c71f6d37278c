"""megagpu operator layer (see DESIGN section 2)."""
