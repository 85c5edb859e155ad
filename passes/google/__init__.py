"""Google Wallet pieces that need neither Flask nor a database.

* :mod:`passes.google.payloads`: loyalty class and object REST bodies from validated content
  (built in :mod:`passes.google.loyalty_class` and :mod:`passes.google.loyalty_object`).
* :mod:`passes.google.savelink`: the signed "Add to Google Wallet" link of a card.
* :mod:`passes.google.callbacks`: verification of Google's signed save/delete callbacks.
"""
