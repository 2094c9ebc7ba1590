"""XEP-0092: software name and version of the ring (the OS is not disclosed)."""

from __future__ import annotations

from lxml import etree

from ..stanza import StanzaView, iq_result

NS_VERSION = "jabber:iq:version"
FEATURES = (NS_VERSION,)
NAME = "ringmesh"


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("ringmesh")
    except Exception:  # not installed as a distribution (running from a checkout)
        return "0"


def handle(sv: StanzaView, payload: etree._Element) -> list[etree._Element]:
    reply = iq_result(sv)
    query = etree.SubElement(reply, f"{{{NS_VERSION}}}query", nsmap={None: NS_VERSION})
    etree.SubElement(query, f"{{{NS_VERSION}}}name").text = NAME
    etree.SubElement(query, f"{{{NS_VERSION}}}version").text = software_version()
    return [reply]
