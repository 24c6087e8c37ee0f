"""The page kit of the lab technicians' web UI: sign-in, templating, i18n, printouts.

The pages themselves are each feature's `views.py`; `lab.main` mounts them.
"""
