"""IFSSNetComparison module library: the Logic (headless, no qt)."""
