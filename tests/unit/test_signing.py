"""Request signing: HMAC-SHA256 over "{timestamp}.{raw body}", fresh within the tolerance."""
import pytest

from services.ingest.signing import SignatureError, sign, verify

SECRET = "s3cret"
BODY = b'{"changes":[]}'


def test_a_fresh_signature_over_the_body_verifies():
    verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY, now=1000, tolerance_s=300)


@pytest.mark.parametrize("timestamp,signature,now,reason", [
    (None, "sha256=00", 1000, "missing X-Crmsync-Timestamp"),
    ("1000", None, 1000, "missing X-Crmsync-Signature"),
    ("soon", "sha256=00", 1000, "unix seconds"),
    ("1000", sign(SECRET, 1000, BODY), 1301, "301 s off"),
    ("1000", sign(SECRET, 1000, BODY), 699, "301 s off"),
    ("1000", sign(SECRET, 1000, BODY).removeprefix("sha256="), 1000, "sha256=<hex>"),
    ("1000", sign("other", 1000, BODY), 1000, "does not match"),
    ("1001", sign(SECRET, 1000, BODY), 1000, "does not match"),
])
def test_refusals_name_the_problem(timestamp, signature, now, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, timestamp, signature, BODY, now=now, tolerance_s=300)


def test_the_signature_covers_the_exact_bytes():
    with pytest.raises(SignatureError):
        verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY + b" ", now=1000, tolerance_s=300)


def test_three_hundred_seconds_is_still_fresh():
    verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY, now=1300, tolerance_s=300)
