"""The data layer: readers for FER2013 and ExpW, one face table, and versioned datasets."""
