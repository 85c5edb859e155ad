"""In-card feedback: after a visit, the pass links to a one-question page (Net Promoter
Score, 0-10, and an optional comment)."""
