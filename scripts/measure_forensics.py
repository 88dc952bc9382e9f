"""Measure camlit.forensics on the measuring sets (camlit/forensics/measure.py says how)."""

from camlit.forensics.measure import main

if __name__ == "__main__":
    main()
