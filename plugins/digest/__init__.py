"""The daily digest: each team's pending reviews in its channel, and optionally to each reviewer."""
