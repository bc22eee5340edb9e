"""One customer's conversation: the user actor, its buffer and its turns.

``actor`` is the user actor (the one writer of the customer's record); ``buffering`` the pure
rules of when to answer; ``turn`` one turn from buffered messages to the reply on WhatsApp;
``events`` what an actor receives; ``deps`` the narrow interface a turn gets its clients
through; ``context``, ``media`` and ``replies`` the model's input and the WhatsApp output.
"""
