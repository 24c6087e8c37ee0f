"""Fault drills: the lab module under crashes, outages, line noise and hostile input.

`make drill` (`.venv/bin/python -m drills [NAME ...]`) runs each drill, prints one summary line
per drill and exits non-zero when one fails. Every drill is bounded in time (under about three
minutes), uses loopback only, and cleans up what it made.
"""
