"""Stanza views: the few questions the edge asks of a stanza, answered once and safely.

Why views rather than a full data model: the edge forwards stanzas it does not understand
(any payload a peer sends must arrive intact), so the lxml element stays the stanza and this
module only reads kind, type, id and the prepared addresses, and builds the few replies the
built-in entities need.
"""

from __future__ import annotations

from typing import NamedTuple

from lxml import etree

from .errors import StanzaCondition, stanza_error_reply
from .jid import JID, JIDError, parse_jid

NS_SERVER = "jabber:server"
NS_CLIENT = "jabber:client"
STANZA_KINDS = ("message", "presence", "iq")
IQ_TYPES = frozenset({"get", "set", "result", "error"})
# Clark tag -> kind, for the stanzas of the server and client namespaces: one dict lookup
# instead of splitting the tag (asked of every stanza).
KIND_BY_TAG = {f"{{{ns}}}{kind}": kind for ns in (NS_SERVER, NS_CLIENT) for kind in STANZA_KINDS}


class StanzaView(NamedTuple):
    """A parsed stanza: its element and prepared addresses (None where absent).

    An immutable NamedTuple rather than a frozen dataclass: one is built for every stanza a
    node delivers, and a frozen dataclass's ``__init__`` costs three times as much."""

    element: etree._Element
    kind: str
    type: str | None
    id: str | None
    sender: JID | None
    recipient: JID | None

    @property
    def is_error(self) -> bool:
        return self.type == "error"

    def payload(self) -> etree._Element | None:
        """First child element that is not an error (the query of an iq, for instance)."""
        for child in self.element:
            if isinstance(child.tag, str) and etree.QName(child).localname != "error":
                return child
        return None


def stanza_kind(element: etree._Element) -> str | None:
    """'message', 'presence' or 'iq' for a stanza in a server or client namespace, else None."""
    return KIND_BY_TAG.get(element.tag)  # comments and PIs have a function as tag: never found


def view(element: etree._Element) -> StanzaView:
    """Read a stanza; raises :class:`JIDError` when from/to cannot be prepared."""
    kind = KIND_BY_TAG.get(element.tag)
    if kind is None:
        raise ValueError(f"not a stanza: {element.tag}")
    get = element.get
    sender = get("from")
    recipient = get("to")
    return StanzaView(
        element,
        kind,
        get("type"),
        get("id"),
        parse_jid(sender) if sender is not None else None,
        parse_jid(recipient) if recipient is not None else None,
    )


def validate_iq(sv: StanzaView) -> StanzaCondition | None:
    """RFC 6120 §8.2.3: an iq needs an id, a known type, and exactly one payload for get/set."""
    if sv.kind != "iq":
        return None
    if not sv.id or sv.type not in IQ_TYPES:
        return StanzaCondition.BAD_REQUEST
    if sv.type in ("get", "set"):
        children = [c for c in sv.element if isinstance(c.tag, str)]
        if len(children) != 1:
            return StanzaCondition.BAD_REQUEST
    return None


def make_stanza(kind: str, sender: str, recipient: str, type: str | None = None,
                id: str | None = None, ns: str = NS_SERVER) -> etree._Element:
    el = etree.Element(f"{{{ns}}}{kind}", nsmap={None: ns})
    el.set("from", sender)
    el.set("to", recipient)
    if type is not None:
        el.set("type", type)
    if id is not None:
        el.set("id", id)
    return el


def iq_result(sv: StanzaView) -> etree._Element:
    """An empty ``result`` answering the iq ``sv`` (the caller may add a payload)."""
    ns = etree.QName(sv.element).namespace or NS_SERVER
    return make_stanza("iq", sv.element.get("to", ""), sv.element.get("from", ""), "result", sv.id, ns)


def error_reply(sv: StanzaView, condition: StanzaCondition, text: str = "") -> etree._Element | None:
    return stanza_error_reply(sv.element, condition, text)


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, encoding="utf-8")


__all__ = [
    "JIDError", "NS_CLIENT", "NS_SERVER", "StanzaView", "error_reply", "iq_result", "make_stanza",
    "serialize", "stanza_kind", "validate_iq", "view",
]
