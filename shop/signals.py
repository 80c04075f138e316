"""Domain events other apps react to, so that shop never imports them (delivery's buyer notices
listen here).

``order_moved`` is sent by ``shop.services.order_transition`` inside the transaction that moves
the order and writes its ``OrderEvent``: a receiver's writes commit or roll back with the move
(a transactional outbox). Arguments: ``order`` (locked, already showing its new status),
``event_type`` (the OrderEvent's dotted type) and ``statements`` (None, or the caller's list of
writes still to run in this transaction: a receiver appends its own there instead of running
them). A receiver must be cheap and must not raise: every delivery sends this signal.
"""

from django.dispatch import Signal

order_moved = Signal(use_caching=True)
