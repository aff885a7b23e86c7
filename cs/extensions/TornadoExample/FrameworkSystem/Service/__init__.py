"""Service handlers of the example Framework system."""
