"""What the key pool tells the apps that listen (delivery), so cardpool never imports them.

``keys_added`` is sent inside the transaction that adds sellable keys to a product's pool
(an import's chunk, with ``finished=False``; the end of an import, ``finished=True``).
Arguments: ``product_id``, ``added`` (whether any key was added), ``finished``. A receiver sends its work after commit.
"""

from django.dispatch import Signal

keys_added = Signal()
