"""Pure pass-building library for Pointpass.

Everything in here turns loyalty-card content into wallet passes (signed ``.pkpass`` archives
for Apple Wallet) and development credentials. It never imports Flask, the database or the job
queue, so it can run in a web worker, a background job or a benchmark alike.
"""
