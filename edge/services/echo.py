"""echo@domain: sends every message body back to its sender (a federation smoke test)."""

from __future__ import annotations

from lxml import etree

from ..stanza import NS_SERVER, StanzaView, make_stanza

LOCALPART = "echo"
MAX_ECHO_CHARS = 64 * 1024


def handle_message(sv: StanzaView) -> list[etree._Element]:
    if sv.is_error or sv.type == "groupchat" or sv.sender is None or sv.recipient is None:
        return []
    ns = etree.QName(sv.element).namespace or NS_SERVER
    body = sv.element.find(f"{{{ns}}}body")
    if body is None:
        return []  # chat states and receipts carry no body: nothing to echo
    reply = make_stanza("message", str(sv.recipient), str(sv.sender), sv.type or "normal", sv.id, ns)
    etree.SubElement(reply, f"{{{ns}}}body").text = (body.text or "")[:MAX_ECHO_CHARS]
    return [reply]
