"""XEP-0030 service discovery for ring domains and the entities on them."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from ..stanza import StanzaView, iq_result

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
FEATURES = (NS_INFO, NS_ITEMS)


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    name: str


@dataclass(frozen=True, slots=True)
class Item:
    jid: str
    name: str


def info(sv: StanzaView, payload: etree._Element, identities: tuple[Identity, ...],
         features: tuple[str, ...]) -> etree._Element:
    reply = iq_result(sv)
    query = etree.SubElement(reply, f"{{{NS_INFO}}}query", nsmap={None: NS_INFO})
    if payload.get("node"):
        query.set("node", payload.get("node"))
    for ident in identities:
        etree.SubElement(query, f"{{{NS_INFO}}}identity", category=ident.category, type=ident.type, name=ident.name)
    for feature in sorted(set(features)):
        etree.SubElement(query, f"{{{NS_INFO}}}feature", var=feature)
    return reply


def items(sv: StanzaView, payload: etree._Element, found: tuple[Item, ...]) -> etree._Element:
    reply = iq_result(sv)
    query = etree.SubElement(reply, f"{{{NS_ITEMS}}}query", nsmap={None: NS_ITEMS})
    if payload.get("node"):
        query.set("node", payload.get("node"))
    for item in found:
        etree.SubElement(query, f"{{{NS_ITEMS}}}item", jid=item.jid, name=item.name)
    return reply
