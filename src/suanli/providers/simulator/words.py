"""The fixed English vocabulary the simulator writes its answers with.

The list is part of the simulator's contract: changing it changes every deterministic answer, so tests
that pin exact text would notice. Common short words keep most of them one token each, which makes the
number of words generated a good first guess at the number of tokens.
"""

from __future__ import annotations

_WORD_LIST = """
the of and to in is that for it as
was with be by on not he this are or
his from at which but have an had they you
were their one all we can her has there been
if more when will would who so no she other
its may these what them than some him time into
only do out any then about first new very our
over such even most made after also well many before
must through back years where much your way down should
because each just those people how too little state good
make world still own see men work long get here
between both life being under never day same another know
while last might us great old year off come since
against go came right used take three small house number
water light power market system model token price energy signal
network answer question river mountain city road field garden window
morning evening summer winter paper letter story music color order
plan value measure balance account service request result reason idea
simple clear quiet bright early late ready steady open careful
build carry follow gather hold keep learn listen move share
"""

WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())
