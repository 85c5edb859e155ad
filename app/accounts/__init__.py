"""People who sign in to the console: accounts, their passwords, roles and programs, and the
one-time links that invite them or reset their password."""
