"""Built-in ring entities: disco, ping, version, echo, and RFC 6121 answers for nobody."""

import pytest
from lxml import etree

from edge.services import RingServices

from .transcript import canon

SVC = RingServices(frozenset({"ring.test"}))
NS = "xmlns='jabber:server'"


def ask(text: str) -> list[str]:
    return [canon(r) for r in SVC.handle(etree.fromstring(text))]


def one(text: str) -> str:
    return canon(etree.fromstring(text))


def test_domain_disco_info_lists_identity_and_features():
    (reply,) = ask(f"<iq {NS} type='get' id='1' from='a@p.test/r' to='ring.test'>"
                   "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert reply == one(
        f"<iq {NS} type='result' id='1' from='ring.test' to='a@p.test/r'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'>"
        "<identity category='server' type='im' name='ringmesh'/>"
        "<feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/>"
        "<feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/></query></iq>")


def test_domain_disco_items_lists_the_echo_entity():
    (reply,) = ask(f"<iq {NS} type='get' id='2' from='a@p.test/r' to='ring.test'>"
                   "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    assert "item|jid=echo@ring.test,name=Echo" in reply


@pytest.mark.parametrize("to", ["ring.test", "echo@ring.test"])
def test_ping_is_answered_by_an_empty_result(to):
    assert ask(f"<iq {NS} type='get' id='p' from='a@p.test/r' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>") == [
        one(f"<iq {NS} type='result' id='p' from='{to}' to='a@p.test/r'/>")]


def test_version_names_the_software():
    (reply,) = ask(f"<iq {NS} type='get' id='v' from='a@p.test/r' to='ring.test'><query xmlns='jabber:iq:version'/></iq>")
    assert "{jabber:iq:version}name|||" not in reply and "ringmesh" in reply


def test_echo_returns_the_body_with_the_same_id_and_type():
    assert ask(f"<message {NS} type='chat' id='e1' from='a@p.test/r' to='echo@ring.test'><body>hé</body>"
               "<active xmlns='http://jabber.org/protocol/chatstates'/></message>") == [
        one(f"<message {NS} type='chat' id='e1' from='echo@ring.test' to='a@p.test/r'><body>hé</body></message>")]
    assert ask(f"<message {NS} type='chat' from='a@p.test/r' to='echo@ring.test'>"
               "<active xmlns='http://jabber.org/protocol/chatstates'/></message>") == []
    assert ask(f"<message {NS} type='error' from='a@p.test/r' to='echo@ring.test'><body>x</body></message>") == []


@pytest.mark.parametrize(
    ("stanza", "expected"),
    [
        (f"<iq {NS} type='get' id='n' from='a@p.test/r' to='nobody@ring.test'><ping xmlns='urn:xmpp:ping'/></iq>",
         "service-unavailable"),
        (f"<iq {NS} type='set' id='n' from='a@p.test/r' to='ring.test'><query xmlns='urn:unknown'/></iq>",
         "service-unavailable"),
        (f"<message {NS} id='n' from='a@p.test/r' to='nobody@ring.test'><body>x</body></message>",
         "service-unavailable"),
        (f"<iq {NS} type='get' from='a@p.test/r' to='ring.test'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        (f"<iq {NS} type='get' id='n' from='a@p.test/r' to='ring.test'/>", "bad-request"),
        (f"<iq {NS} type='get' id='n' from='a@p.test/r' to='bad user@ring.test'><ping xmlns='urn:xmpp:ping'/></iq>",
         "jid-malformed"),
    ],
)
def test_errors_follow_rfc_6120_and_6121(stanza, expected):
    (reply,) = ask(stanza)
    assert f"{{urn:ietf:params:xml:ns:xmpp-stanzas}}{expected}" in reply and "type=error" in reply


@pytest.mark.parametrize(
    "stanza",
    [
        f"<presence {NS} from='a@p.test/r' to='nobody@ring.test'/>",
        f"<iq {NS} type='result' id='x' from='a@p.test/r' to='nobody@ring.test'/>",
        f"<iq {NS} type='error' id='x' from='a@p.test/r' to='ring.test'/>",
        f"<message {NS} type='error' from='a@p.test/r' to='nobody@ring.test'/>",
    ],
)
def test_no_answer_to_presence_results_or_errors(stanza):
    assert ask(stanza) == []
