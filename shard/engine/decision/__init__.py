"""The three phases and the formulas they share (cost.py)."""
