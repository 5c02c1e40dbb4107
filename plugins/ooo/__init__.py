"""Out-of-office periods: ``/ooo`` records, lists and cancels the days someone is away."""
