"""Route a stanza for a ring address to the built-in entity that answers it.

RFC 6121 defaults for addresses nobody serves (§8.5.2.2.1, §8.5.3.2): an iq gets
``service-unavailable``; a message gets ``service-unavailable`` too (we have no offline
storage), except a ``headline``, which expects no reply (§5.2.2) and is dropped silently as
§8.5.2.2.1 allows; presence is dropped silently. An iq to a served entity with a payload nobody
handles also gets ``service-unavailable`` (RFC 6120 §8.4).
"""

from __future__ import annotations

from lxml import etree

from ..errors import StanzaCondition
from ..jid import JIDError
from ..stanza import StanzaView, error_reply, validate_iq, view
from . import disco, echo, ping, version

ENTITY_FEATURES = disco.FEATURES + ping.FEATURES + version.FEATURES


class RingServices:
    """The built-in entities of the ring's domains, as one pure ``handle`` function."""

    def __init__(self, domains: frozenset[str], *, echo_entity: bool = True) -> None:
        self.domains = domains
        self.echo_entity = echo_entity

    def serves(self, sv: StanzaView) -> bool:
        r = sv.recipient
        if r is None or r.domain not in self.domains:
            return False
        return r.local is None or (self.echo_entity and r.local == echo.LOCALPART)

    def handle(self, element: etree._Element, sv: StanzaView | None = None) -> list[etree._Element]:
        """Replies (possibly none) to a stanza addressed to a ring domain or entity
        (``sv``: its view, when the caller has read it already)."""
        if sv is None:
            try:
                sv = view(element)
            except JIDError:
                reply = error_reply_raw(element, StanzaCondition.JID_MALFORMED)
                return [reply] if reply is not None else []
        if sv.sender is None:
            return []  # nowhere to answer
        bad = validate_iq(sv)
        if bad is not None:
            return _maybe(error_reply(sv, bad))
        if not self.serves(sv):
            return self._nobody(sv)
        if sv.kind == "iq":
            return self._iq(sv)
        if sv.kind == "message" and sv.recipient and sv.recipient.local == echo.LOCALPART:
            return echo.handle_message(sv)
        if sv.kind == "message" and not sv.is_error and sv.type != "headline":
            return _maybe(error_reply(sv, StanzaCondition.SERVICE_UNAVAILABLE))
        return []

    def _nobody(self, sv: StanzaView) -> list[etree._Element]:
        if sv.kind == "presence" or sv.is_error or (sv.kind == "iq" and sv.type in ("result", "error")):
            return []
        if sv.kind == "message" and sv.type == "headline":
            return []
        return _maybe(error_reply(sv, StanzaCondition.SERVICE_UNAVAILABLE))

    def _iq(self, sv: StanzaView) -> list[etree._Element]:
        if sv.type not in ("get", "set"):
            return []
        payload = sv.payload()
        assert payload is not None  # validate_iq checked there is exactly one
        tag = payload.tag
        is_domain = sv.recipient is not None and sv.recipient.local is None
        if sv.type == "get":
            if tag == f"{{{ping.NS_PING}}}ping":
                return ping.handle(sv, payload)
            if tag == f"{{{version.NS_VERSION}}}query" and is_domain:
                return version.handle(sv, payload)
            if tag == f"{{{disco.NS_INFO}}}query":
                return [self._info(sv, payload, is_domain)]
            if tag == f"{{{disco.NS_ITEMS}}}query":
                found = ()
                if is_domain and self.echo_entity and not payload.get("node"):
                    found = (disco.Item(f"{echo.LOCALPART}@{sv.recipient.domain}", "Echo"),)
                return [disco.items(sv, payload, found)]
        return _maybe(error_reply(sv, StanzaCondition.SERVICE_UNAVAILABLE))

    def _info(self, sv: StanzaView, payload: etree._Element, is_domain: bool) -> etree._Element:
        if payload.get("node"):
            return error_reply(sv, StanzaCondition.ITEM_NOT_FOUND)
        if is_domain:
            ident = (disco.Identity("server", "im", "ringmesh"),)
            return disco.info(sv, payload, ident, ENTITY_FEATURES)
        ident = (disco.Identity("client", "bot", "Echo"),)
        return disco.info(sv, payload, ident, disco.FEATURES + ping.FEATURES)


def _maybe(reply: etree._Element | None) -> list[etree._Element]:
    return [reply] if reply is not None else []


def error_reply_raw(element: etree._Element, condition: StanzaCondition) -> etree._Element | None:
    from ..errors import stanza_error_reply

    return stanza_error_reply(element, condition)
