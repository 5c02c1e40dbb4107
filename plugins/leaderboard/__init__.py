"""Leaderboards: reviewers ranked by reviews, engagement or speed, per team and period."""
