"""Address normalisation: the same person's address compares equal however a header writes it."""
from services.mail_fetch.addresses import addresses_in, normalise_address


def test_case_and_display_names_go():
    assert normalise_address('"Ann Smith" <Ann.Smith@Example.COM>') == "ann.smith@example.com"
    assert normalise_address("ann@example.com (Ann at work)") == "ann@example.com"


def test_plus_addressing_is_kept_as_written():
    assert normalise_address("Ann+CRM@example.com") == "ann+crm@example.com"
    assert normalise_address("ann+crm@example.com") != normalise_address("ann@example.com")


def test_international_domains_have_one_form():
    assert normalise_address("jörg@Bücher.de") == "jörg@xn--bcher-kva.de"
    assert normalise_address("jörg@xn--bcher-kva.de") == "jörg@xn--bcher-kva.de"


def test_what_is_not_an_address_is_none():
    for raw in ("", None, "undisclosed-recipients:;", "no at sign", "@example.com", "ann@"):
        assert normalise_address(raw) is None


def test_headers_with_many_addresses_give_each_once_in_order():
    headers = ['Ann <ann@x.com>, "Bob, B." <BOB@x.com>', "ann@X.com", "carl@y.org"]
    assert addresses_in(headers) == ["ann@x.com", "bob@x.com", "carl@y.org"]
