"""Wallet integrations: Apple Wallet and Google Wallet."""
