"""Analytics: the figures of docs/metrics.md, from daily rollups kept by the periodic sweep.

Above the domains it reads (loyalty, wallet, feedback, campaigns, redemption); none of them
imports it.
"""
