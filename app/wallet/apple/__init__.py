"""Apple Wallet: passes, the PassKit web service and APNs pushes."""
