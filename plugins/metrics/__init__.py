"""metrics: the daily aggregation of the review lifecycle into ``review_metrics``."""
