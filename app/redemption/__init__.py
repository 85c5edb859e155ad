"""Redemption: staff scan a card and redeem a reward."""
