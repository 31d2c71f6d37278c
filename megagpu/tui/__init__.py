"""megagpu tui layer (see DESIGN section 2)."""
