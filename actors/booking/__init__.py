"""The booking tools, built in and optional: availability and prices from Beds24.

- ``booking.dates``: the rules of the dates a model asks about (pure functions).
- ``booking.availability``: a Beds24 calendar turned into the text the model reads (pure).
- ``booking.tool``: the ``check_availability`` tool (switched on by the ``BEDS24_*`` settings).
- ``booking.validator``: the built-in check of an answer's apartment names and prices
  against what ``check_availability`` returned (``BEDS24_CHECK_ANSWERS``).
"""
