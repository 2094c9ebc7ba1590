"""XEP-0199: an iq get with <ping/> is answered by an empty result."""

from __future__ import annotations

from lxml import etree

from ..stanza import StanzaView, iq_result

NS_PING = "urn:xmpp:ping"
FEATURES = (NS_PING,)


def handle(sv: StanzaView, payload: etree._Element) -> list[etree._Element]:
    return [iq_result(sv)]
