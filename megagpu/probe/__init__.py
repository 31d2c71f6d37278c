"""megagpu probe layer (see DESIGN section 2)."""
