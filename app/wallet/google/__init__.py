"""Google Wallet: loyalty classes and objects, save links, and Google's callbacks."""
