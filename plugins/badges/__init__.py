"""Badges: criteria on the reviewers' metrics, evaluated daily, awarded once per period."""
