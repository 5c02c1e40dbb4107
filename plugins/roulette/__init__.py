"""Reviewer Roulette: pick merge-request reviewers from CODEOWNERS and the team."""
