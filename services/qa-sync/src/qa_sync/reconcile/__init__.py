"""Reconcile: every terminal job's objects checked and, unless only verifying, repaired.

checks.py  find a job's two objects (recorded, standard or legacy key) and say what is wrong
repair.py  one job: check it and fix what the checks found, recorded in one transaction
run.py     every terminal job, each under its lease, into one report
"""
