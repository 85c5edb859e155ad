"""The marketer's console (``/console``): server-rendered pages over the same domain services
as the API, for people who sign in with an account (:mod:`app.accounts`)."""
