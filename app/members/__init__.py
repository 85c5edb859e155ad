"""The member directory: finding a program's members, and what the console and the API show
of one (their card, lots, ledger with who acted, wallets)."""
